//! The step plan: which tokens of which sequences the next forward pass runs, as a pure
//! function of the scheduler's state, so its fairness and limits are tested without a model.
//!
//! Each step, as vLLM's V1 scheduler makes it:
//! 1. every decoding sequence gets its next token (decodes first, so a long prompt arriving
//!    never freezes the streams already running);
//! 2. sequences still reading their prompt get chunks of it, oldest first, under what is left
//!    of the token budget (chunked prefill); while any sequence decodes, the prompt tokens of
//!    a step are capped lower ([`Budget::prefill_while_decoding`]), so that a prompt arriving
//!    delays the running streams' next token by a short chunk's time, not a whole prompt's
//!    (Sarathi-Serve's stall-free batching);
//! 3. waiting requests are admitted in arrival order while a slot is free and budget is left:
//!    each goes to the free slot whose cached tokens share the longest prefix with its prompt
//!    (a system prompt, the previous turn of a chat), the least recently used one on a tie,
//!    and only the tokens after that prefix are computed. The last prompt token is always
//!    computed, for its logits.
//!
//! ```
//! use pupil::serve::plan::{plan, Budget, Running, Waiting, FreeSlot};
//! let running = [Running { slot: 0, prompt_left: 0 }, Running { slot: 1, prompt_left: 3000 }];
//! let waiting = [Waiting { prompt_len: 40 }];
//! let free = [FreeSlot { slot: 2, last_used: 0 }];
//! let p = plan(&running, &waiting, &free, Budget { tokens: 512, prefill_while_decoding: 64 }, |_, _| 0);
//! assert_eq!(p.decode, [0]);             // the stream keeps going
//! assert_eq!(p.prefill, [(1, 64)]);      // the long prompt takes a chunk that keeps it going
//! assert!(p.admit.is_empty());           // nothing left for the newcomer this step
//! ```

/// Limits of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most tokens one forward pass runs (decode tokens and prompt chunks together).
    pub tokens: usize,
    /// Most prompt tokens one forward pass runs while any sequence is decoding (at least one
    /// is always allowed, so prompts progress under any load).
    pub prefill_while_decoding: usize,
}

/// A sequence holding a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Running {
    /// Its slot.
    pub slot: usize,
    /// Prompt tokens not yet computed; 0 once it is decoding.
    pub prompt_left: usize,
}

/// A request in the admission queue, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// Its prompt's tokens.
    pub prompt_len: usize,
}

/// A slot no sequence holds; it may still cache the tokens of the last one that did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeSlot {
    /// The slot.
    pub slot: usize,
    /// When it was last released (larger is more recent).
    pub last_used: u64,
}

/// A waiting request placed in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admit {
    /// Index into the waiting list.
    pub waiting: usize,
    /// The slot it gets.
    pub slot: usize,
    /// Prompt tokens already in the slot's cache, not computed again.
    pub reuse: usize,
    /// Prompt tokens computed this step, after `reuse`.
    pub chunk: usize,
}

/// What one step runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Indices into the running list: one token each.
    pub decode: Vec<usize>,
    /// `(index into the running list, prompt tokens)`: the next chunk of each prompt.
    pub prefill: Vec<(usize, usize)>,
    /// Waiting requests admitted, in order.
    pub admit: Vec<Admit>,
}

impl Plan {
    /// Tokens the step runs.
    pub fn tokens(&self) -> usize {
        self.decode.len()
            + self.prefill.iter().map(|p| p.1).sum::<usize>()
            + self.admit.iter().map(|a| a.chunk).sum::<usize>()
    }

    /// Whether the step runs nothing.
    pub fn is_empty(&self) -> bool {
        self.tokens() == 0
    }
}

/// Plans one step (see the [module docs](self)). `prefix(waiting, slot)` is how many leading
/// prompt tokens of waiting request `waiting` the cache of free slot `slot` holds and can
/// give back.
pub fn plan(
    running: &[Running],
    waiting: &[Waiting],
    free: &[FreeSlot],
    budget: Budget,
    mut prefix: impl FnMut(usize, usize) -> usize,
) -> Plan {
    let mut p = Plan::default();
    let mut left = budget.tokens;
    for (i, r) in running.iter().enumerate() {
        if r.prompt_left == 0 && left > 0 {
            p.decode.push(i);
            left -= 1;
        }
    }
    if !p.decode.is_empty() {
        left = left.min(budget.prefill_while_decoding.max(1));
    }
    for (i, r) in running.iter().enumerate() {
        if r.prompt_left > 0 && left > 0 {
            let n = r.prompt_left.min(left);
            p.prefill.push((i, n));
            left -= n;
        }
    }
    let mut taken = vec![false; free.len()];
    for (w, req) in waiting.iter().enumerate() {
        if left == 0 || req.prompt_len == 0 {
            break;
        }
        // The longest usable prefix wins; then the least recently used slot.
        let best = free
            .iter()
            .enumerate()
            .filter(|(k, _)| !taken[*k])
            .map(|(k, f)| (k, f, prefix(w, f.slot).min(req.prompt_len - 1)))
            .max_by(|a, b| a.2.cmp(&b.2).then(b.1.last_used.cmp(&a.1.last_used)));
        let Some((k, f, reuse)) = best else { break };
        taken[k] = true;
        let chunk = (req.prompt_len - reuse).min(left);
        left -= chunk;
        p.admit.push(Admit { waiting: w, slot: f.slot, reuse, chunk });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoding(slot: usize) -> Running {
        Running { slot, prompt_left: 0 }
    }

    #[test]
    fn decodes_come_first_and_a_long_prompt_is_chunked_under_the_budget() {
        let running: Vec<Running> = (0..8).map(decoding).chain([Running { slot: 8, prompt_left: 4000 }]).collect();
        let p = plan(&running, &[], &[], Budget { tokens: 256, prefill_while_decoding: 256 }, |_, _| 0);
        assert_eq!(p.decode, (0..8).collect::<Vec<_>>());
        assert_eq!(p.prefill, [(8, 248)]);
        assert_eq!(p.tokens(), 256);
    }

    #[test]
    fn the_budget_caps_decodes_too() {
        let running: Vec<Running> = (0..10).map(decoding).collect();
        let p = plan(
            &running,
            &[Waiting { prompt_len: 5 }],
            &[FreeSlot { slot: 10, last_used: 0 }],
            Budget { tokens: 4, prefill_while_decoding: 4 },
            |_, _| 0,
        );
        assert_eq!((p.decode.len(), p.prefill.len(), p.admit.len()), (4, 0, 0));
    }

    #[test]
    fn admission_is_in_arrival_order_and_stops_when_slots_run_out() {
        let waiting = [Waiting { prompt_len: 10 }, Waiting { prompt_len: 20 }, Waiting { prompt_len: 30 }];
        let free = [FreeSlot { slot: 3, last_used: 5 }, FreeSlot { slot: 1, last_used: 2 }];
        let p = plan(&[], &waiting, &free, Budget { tokens: 1000, prefill_while_decoding: 1000 }, |_, _| 0);
        // No prefix anywhere: the least recently used slot goes first.
        assert_eq!(
            p.admit,
            [Admit { waiting: 0, slot: 1, reuse: 0, chunk: 10 }, Admit { waiting: 1, slot: 3, reuse: 0, chunk: 20 }]
        );
    }

    #[test]
    fn a_request_goes_to_the_slot_with_the_longest_prefix_and_computes_only_the_rest() {
        let free = [
            FreeSlot { slot: 0, last_used: 1 },
            FreeSlot { slot: 1, last_used: 9 },
            FreeSlot { slot: 2, last_used: 3 },
        ];
        let prefix = |_, slot| [0, 400, 12][slot];
        let p = plan(
            &[],
            &[Waiting { prompt_len: 450 }],
            &free,
            Budget { tokens: 512, prefill_while_decoding: 512 },
            prefix,
        );
        assert_eq!(p.admit, [Admit { waiting: 0, slot: 1, reuse: 400, chunk: 50 }]);
    }

    #[test]
    fn the_last_prompt_token_is_always_computed() {
        let p = plan(
            &[],
            &[Waiting { prompt_len: 7 }],
            &[FreeSlot { slot: 0, last_used: 0 }],
            Budget { tokens: 64, prefill_while_decoding: 64 },
            |_, _| 99,
        );
        assert_eq!(p.admit, [Admit { waiting: 0, slot: 0, reuse: 6, chunk: 1 }]);
    }

    #[test]
    fn an_admitted_prompt_longer_than_the_budget_starts_with_a_chunk() {
        let p = plan(
            &[decoding(0)],
            &[Waiting { prompt_len: 2048 }],
            &[FreeSlot { slot: 1, last_used: 0 }],
            Budget { tokens: 512, prefill_while_decoding: 512 },
            |_, _| 0,
        );
        assert_eq!(p.decode, [0]);
        assert_eq!(p.admit, [Admit { waiting: 0, slot: 1, reuse: 0, chunk: 511 }]);
    }

    #[test]
    fn prompt_chunks_are_capped_while_streams_decode_and_never_starve() {
        let running: Vec<Running> = (0..8).map(decoding).collect();
        let free = [FreeSlot { slot: 8, last_used: 0 }];
        let budget = Budget { tokens: 512, prefill_while_decoding: 96 };
        let p = plan(&running, &[Waiting { prompt_len: 256 }], &free, budget, |_, _| 0);
        assert_eq!(p.decode.len(), 8);
        assert_eq!(p.admit, [Admit { waiting: 0, slot: 8, reuse: 0, chunk: 96 }]);
        // Nothing decoding: the whole budget.
        let p = plan(&[], &[Waiting { prompt_len: 600 }], &free, budget, |_, _| 0);
        assert_eq!(p.admit[0].chunk, 512);
        // No prompt anywhere: only the decodes.
        let p = plan(&running, &[], &[], budget, |_, _| 0);
        assert_eq!(p.tokens(), 8);
        // A cap of zero still lets one prompt token through.
        let one = plan(
            &[decoding(0), Running { slot: 1, prompt_left: 50 }],
            &[],
            &[],
            Budget { prefill_while_decoding: 0, ..budget },
            |_, _| 0,
        );
        assert_eq!(one.prefill, [(1, 1)]);
    }

    #[test]
    fn no_state_plans_nothing() {
        assert!(plan(&[], &[], &[], Budget { tokens: 512, prefill_while_decoding: 512 }, |_, _| 0).is_empty());
    }
}
