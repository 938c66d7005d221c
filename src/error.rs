//! [`ErrorKind`]: whose fault an error is, for callers that turn pupil's errors into their own
//! words. Every library error says it with a `kind()` method; the command line maps it to an
//! exit status and a flag to change, the server to an HTTP status.

/// Whose fault an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is wrong and its giver can fix it: a malformed or unsupported model file, a
    /// setting out of range, a token id outside the vocabulary, a template that rejects the
    /// conversation.
    BadInput,
    /// The input is larger than the limits it was given: a prompt longer than the context.
    TooLong,
    /// The machine failed: a file could not be read, a thread could not start.
    Io,
    /// A use of the library that its documentation rules out (a stale slot, a batch larger
    /// than the buffers), or a bug.
    Internal,
}

impl ErrorKind {
    /// Whether the giver of the input can fix it ([`BadInput`](Self::BadInput) or
    /// [`TooLong`](Self::TooLong)).
    pub fn is_bad_input(self) -> bool {
        matches!(self, ErrorKind::BadInput | ErrorKind::TooLong)
    }
}
