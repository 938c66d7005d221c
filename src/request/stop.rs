//! Stop strings over streamed text: text is released only once it cannot be the start of a
//! stop string, so a stop string split across tokens is never half-printed.

/// Watches generated text for stop strings.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released (a possible stop-string prefix at its end).
    held: String,
}

/// What [`StopMatcher::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum StopScan<'a> {
    /// Release this text (possibly empty) and go on.
    Go(String),
    /// A stop string matched: release the text before it and stop.
    Stop {
        /// Text before the stop string.
        text: String,
        /// The stop string that matched.
        stop: &'a str,
    },
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), held: String::new() }
    }

    /// Add `text` and say what may be released.
    pub fn push(&mut self, text: &str) -> StopScan<'_> {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return StopScan::Go(std::mem::take(&mut self.held));
        }
        // The earliest complete stop string wins.
        let found = self.stops.iter().filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s))).min_by_key(|&(at, _)| at);
        if let Some((at, stop)) = found {
            let text = self.held[..at].to_string();
            self.held.clear();
            return StopScan::Stop { text, stop };
        }
        // Hold back the longest tail that some stop string starts with.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopScan::Go(out)
    }

    /// The text still held back, released when generation ends for another reason.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_string_split_across_pieces_is_never_released() {
        let mut m = StopMatcher::new(&["</answer>".into(), "\n\n".into()]);
        assert_eq!(m.push("The answer is 4"), StopScan::Go("The answer is 4".into()));
        assert_eq!(m.push(".</ans"), StopScan::Go(".".into()));
        assert_eq!(m.push("wer> trailing"), StopScan::Stop { text: String::new(), stop: "</answer>" });
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching() {
        let mut m = StopMatcher::new(&["STOP".into()]);
        assert_eq!(m.push("ST"), StopScan::Go(String::new()));
        assert_eq!(m.push("AR"), StopScan::Go("STAR".into()));
        assert_eq!(m.push("S"), StopScan::Go(String::new()));
        assert_eq!(m.finish(), "S");
    }

    #[test]
    fn the_earliest_stop_wins_and_multibyte_prefixes_are_safe() {
        let mut m = StopMatcher::new(&["é!".into(), "b".into()]);
        assert_eq!(m.push("aé"), StopScan::Go("a".into()));
        assert_eq!(m.push("xb"), StopScan::Stop { text: "éx".into(), stop: "b" });
    }
}
