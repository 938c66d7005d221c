//! How fast a [`Runner`] is: the one definition of pp, tg and TTFT that `pupil bench`,
//! `pupil compare` and the library report, and the one loop that measures them.
//!
//! llama-bench's definitions are the reference, so that pupil's numbers read as its tables do:
//!
//! - **pp** (prompt processing, llama-bench's `pp512`): from an empty cache, one batch of
//!   `n_prompt` tokens at positions `0..n_prompt`, only the last token's logits wanted.
//!   Tokens per second = `n_prompt` / the time of that forward pass.
//! - **TTFT** (time to first token): the same run, up to the first token chosen from those
//!   logits (greedily): pp's forward pass plus the choice, in seconds.
//! - **tg** (token generation, llama-bench's `tg128`): from an empty cache, `n_gen` forward
//!   passes of one token each at positions `0..n_gen`, every token's logits computed. The
//!   tokens fed are given, none is chosen, so no sampling is in the clock (llama-bench feeds
//!   random tokens too). Tokens per second = `n_gen` / the time of the `n_gen` passes.
//!
//! tg starts from an empty cache, not after the prompt, because llama-bench's `tgN` does (its
//! `-pg` test is the one after a prompt, and `-d` sets a depth): so tg is comparable with
//! llama.cpp's published numbers and with llama.cpp measured in the same process, and it
//! depends on `n_gen` alone, not on whatever prompt a command happens to use. Decoding deep
//! into a long context is a different quantity (attention grows with the depth), which no
//! command here reports as tg.
//!
//! - **tg×B at depth d** (several sequences decoding together, llama-batched-bench's `S_TG`):
//!   `B` sequences each hold the same `d` prompt tokens (run once on the first and copied to
//!   the others, outside the clock), then `n_gen` forward passes of one token per sequence,
//!   every sequence's logits computed. Tokens per second = `B · n_gen` / the time of the
//!   passes: the aggregate rate, which [`measure_parallel`] reports beside `B = 1` at the same
//!   depth, so that the gain from batching reads as one ratio.
//!
//! Every test's cache is emptied before it, outside the clock. [`measure`] gives every runner
//! one warm-up round (the first pass pays for page faults on the mapped weights), then
//! `repetitions` measured rounds, and reports each quantity's [`median`](super::median) with
//! its spread ([`Stats`]). Several runners are interleaved round by round (pp on each, then
//! tg on each), so a noisy neighbour slows every engine rather than one.
//!
//! ```no_run
//! use pupil::model::Model;
//! use pupil::runner::PupilRunner;
//! use pupil::runner::speed::{self, Plan, Tokens};
//! # fn main() -> Result<(), pupil::runner::RunnerError> {
//! let model = Model::open("models/distill/student-q4_0.gguf")?;
//! let plan = Plan { n_prompt: 128, n_gen: 32, repetitions: 5 };
//! let mut runner = PupilRunner::new(&model, &plan.runner_options())?;
//! let tokens = Tokens::cycled(&[1, 2, 3, 4, 5], &plan);
//! let m = speed::measure(&plan, &tokens, &mut [&mut runner], |_| {})?;
//! println!("tg{}: {:.1} tok/s", plan.n_gen, m[0].tg.as_ref().map_or(0.0, |s| s.median));
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use super::{Runner, RunnerError, RunnerOptions, Stats};
use crate::sample::argmax;

/// What to measure. A test with 0 tokens is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Prompt tokens of the pp test (llama-bench's `-p`).
    pub n_prompt: usize,
    /// Decode steps of the tg test (llama-bench's `-n`).
    pub n_gen: usize,
    /// Measured repetitions after the warm-up round.
    pub repetitions: usize,
}

impl Plan {
    /// Positions a runner needs: both tests start from an empty cache.
    pub fn n_ctx(&self) -> usize {
        self.n_prompt.max(self.n_gen).max(1)
    }

    /// Options of a runner sized for the plan: [`Plan::n_ctx`] positions, the prompt as one
    /// batch, the rest at the defaults.
    pub fn runner_options(&self) -> RunnerOptions {
        RunnerOptions::new(self.n_ctx(), self.n_prompt.max(1))
    }
}

/// The token ids the tests feed, the same for every runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// `[n_prompt]`.
    pub prompt: Vec<u32>,
    /// `[n_gen]`.
    pub generate: Vec<u32>,
}

impl Tokens {
    /// `text` repeated as needed: its first `n_prompt` tokens for pp, the `n_gen` after them
    /// for tg. Empty tests for an empty `text`.
    pub fn cycled(text: &[u32], plan: &Plan) -> Tokens {
        let mut it = text.iter().copied().cycle();
        let prompt = it.by_ref().take(plan.n_prompt).collect();
        Tokens { prompt, generate: it.take(plan.n_gen).collect() }
    }
}

/// Which test a step runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Prompt processing (and TTFT).
    Prompt,
    /// Token generation.
    Generate,
    /// Token generation of this many sequences at once.
    Sequences(usize),
}

/// The several-sequence test (tg×B at depth d, see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parallel {
    /// Sequences decoding together (`B`); the test also runs one alone for the ratio.
    pub n_seq: usize,
    /// Prompt tokens every sequence holds before the steps (`d`).
    pub depth: usize,
    /// Decode steps.
    pub n_gen: usize,
    /// Measured repetitions after the warm-up round.
    pub repetitions: usize,
}

impl Parallel {
    /// Options of a runner sized for the test: `n_seq` sequences of `depth + n_gen`
    /// positions, the prompt as one batch.
    pub fn runner_options(&self) -> RunnerOptions {
        let batch = self.depth.max(self.n_seq).max(1);
        RunnerOptions { n_seq: self.n_seq.max(1), ..RunnerOptions::new(self.depth + self.n_gen, batch) }
    }
}

/// The tg×B test once, `B = n_seq` (at most the runner's sequences): every sequence given
/// `prompt` (run on sequence 0 and copied), then one step per token of `generate`, sequence
/// `s` fed the token `s` places further along it (cyclically). Returns the steps' time.
/// `logits` is `[n_seq, n_vocab]`.
pub fn parallel(
    r: &mut dyn Runner,
    n_seq: usize,
    prompt: &[u32],
    generate: &[u32],
    logits: &mut [f32],
) -> Result<Duration, RunnerError> {
    let n_vocab = r.n_vocab();
    r.clear();
    if !prompt.is_empty() {
        r.forward_seqs(&[(0, prompt)], &mut logits[..n_vocab])?;
        for s in 1..n_seq {
            r.copy_seq(0, s)?;
        }
    }
    // Every step's tokens, laid out before the clock starts.
    let n = generate.len();
    let steps: Vec<Vec<u32>> = (0..n).map(|i| (0..n_seq).map(|s| generate[(i + s) % n]).collect()).collect();
    let mut chunks: Vec<(usize, &[u32])> = Vec::with_capacity(n_seq);
    let start = Instant::now();
    for step in &steps {
        chunks.clear();
        chunks.extend(step.iter().enumerate().map(|(s, t)| (s, std::slice::from_ref(t))));
        r.forward_seqs(&chunks, logits)?;
    }
    Ok(start.elapsed())
}

/// Runs the tg×B test for each `B` of `counts` on every runner (each sized for the largest:
/// [`Parallel::runner_options`]): a warm-up round, then `par.repetitions` rounds, each
/// running every count on every runner in turn. `tokens.prompt` must hold `par.depth`
/// tokens and `tokens.generate` `par.n_gen`. Returns per runner, per count, the aggregate
/// tokens per second.
pub fn measure_parallel(
    par: &Parallel,
    counts: &[usize],
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<Vec<Option<Stats>>>, RunnerError> {
    let total = (par.repetitions + 1) * counts.len() * runners.len();
    let mut secs = vec![vec![Vec::new(); counts.len()]; runners.len()];
    let most = counts.iter().copied().max().unwrap_or(1);
    let mut logits: Vec<Vec<f32>> = runners.iter().map(|r| vec![0.0; most * r.n_vocab()]).collect();
    let spinning = beside_llama(runners);
    let mut done = 0;
    for round in 0..=par.repetitions {
        let repetition = round.checked_sub(1);
        for (c, &b) in counts.iter().enumerate() {
            for (i, r) in runners.iter_mut().enumerate() {
                settle(spinning);
                progress(&Progress { runner: r.backend().name(), test: Test::Sequences(b), repetition, done, total });
                let n_vocab = r.n_vocab();
                let t = parallel(&mut **r, b, &tokens.prompt, &tokens.generate, &mut logits[i][..b * n_vocab])?;
                if repetition.is_some() {
                    secs[i][c].push(t.as_secs_f64());
                }
                done += 1;
            }
        }
    }
    Ok(secs
        .into_iter()
        .map(|per| per.iter().zip(counts).map(|(s, &b)| Stats::from_secs(b * par.n_gen, s)).collect())
        .collect())
}

/// Where [`measure`] is, for a progress bar: passed before each step.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The engine about to run (`pupil`, `llama.cpp`).
    pub runner: &'static str,
    /// The test.
    pub test: Test,
    /// The repetition (0-based), `None` for the warm-up round.
    pub repetition: Option<usize>,
    /// Steps done so far.
    pub done: usize,
    /// Steps in all.
    pub total: usize,
}

/// One runner's results: `None` for a skipped test.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// Prompt processing, tokens/s.
    pub pp: Option<Stats>,
    /// Token generation, tokens/s.
    pub tg: Option<Stats>,
    /// Time to first token, seconds (with pp).
    pub ttft: Option<Stats>,
}

/// The pp test once: returns pp's time and TTFT. `logits` is `[n_vocab]`.
pub fn prompt(r: &mut dyn Runner, tokens: &[u32], logits: &mut [f32]) -> Result<(Duration, Duration), RunnerError> {
    r.clear();
    let n = tokens.len();
    let start = Instant::now();
    r.forward(tokens, 0, n.saturating_sub(1)..n, logits)?;
    let pp = start.elapsed();
    std::hint::black_box(argmax(logits));
    Ok((pp, start.elapsed()))
}

/// The tg test once: returns its time. `logits` is `[n_vocab]`.
pub fn generate(r: &mut dyn Runner, tokens: &[u32], logits: &mut [f32]) -> Result<Duration, RunnerError> {
    r.clear();
    let start = Instant::now();
    for (pos, &t) in tokens.iter().enumerate() {
        r.forward(&[t], pos, 0..1, logits)?;
    }
    Ok(start.elapsed())
}

/// How long the CPU is left idle before each run when llama.cpp takes turns with pupil: ggml's
/// thread pool keeps its workers spinning for work after a graph (`poll` 50: 50 · 2^17 rounds
/// of `pause`, a few hundred milliseconds), and an engine run in that time shares its cores
/// with them. Measured on 2 cores, the embedded F16 teacher's pp512: pupil 1334-1629 tok/s
/// right after llama.cpp's runs, 2234-2722 alone.
pub const SETTLE: Duration = Duration::from_millis(600);

/// Whether llama.cpp takes turns with another engine among `runners`.
fn beside_llama(runners: &[&mut dyn Runner]) -> bool {
    runners.len() > 1 && runners.iter().any(|r| r.backend() == super::Backend::Llama)
}

/// Waits [`SETTLE`] if llama.cpp takes turns with another engine (`spinning`).
fn settle(spinning: bool) {
    if spinning {
        std::thread::sleep(SETTLE);
    }
}

/// Runs `plan` on every runner (each sized for it: [`Plan::runner_options`]): a warm-up
/// round, then `plan.repetitions` rounds, each running pp on every runner in turn, then tg.
/// `progress` is called before every step (a bandwidth probe may read there, just before a
/// tg run). Returns one [`Measured`] per runner, in order.
pub fn measure(
    plan: &Plan,
    tokens: &Tokens,
    runners: &mut [&mut dyn Runner],
    mut progress: impl FnMut(&Progress),
) -> Result<Vec<Measured>, RunnerError> {
    let tests: Vec<(Test, &[u32])> = [(Test::Prompt, &tokens.prompt[..]), (Test::Generate, &tokens.generate[..])]
        .into_iter()
        .filter(|(_, t)| !t.is_empty())
        .collect();
    let total = (plan.repetitions + 1) * tests.len() * runners.len();
    // Per runner: pp seconds, TTFT seconds, tg seconds.
    let mut secs = vec![[Vec::new(), Vec::new(), Vec::new()]; runners.len()];
    let mut logits: Vec<Vec<f32>> = runners.iter().map(|r| vec![0.0; r.n_vocab()]).collect();
    let spinning = beside_llama(runners);
    let mut done = 0;
    for round in 0..=plan.repetitions {
        let repetition = round.checked_sub(1);
        for &(test, toks) in &tests {
            for (i, r) in runners.iter_mut().enumerate() {
                settle(spinning);
                progress(&Progress { runner: r.backend().name(), test, repetition, done, total });
                let times = match test {
                    Test::Prompt => {
                        let (pp, ttft) = prompt(&mut **r, toks, &mut logits[i])?;
                        [Some(pp), Some(ttft), None]
                    }
                    Test::Generate => [None, None, Some(generate(&mut **r, toks, &mut logits[i])?)],
                    // Not among `tests`: `measure_parallel` runs it.
                    Test::Sequences(_) => [None, None, None],
                };
                if repetition.is_some() {
                    for (s, t) in secs[i].iter_mut().zip(times) {
                        s.extend(t.map(|t| t.as_secs_f64()));
                    }
                }
                done += 1;
            }
        }
    }
    Ok(secs
        .into_iter()
        .map(|[pp, ttft, tg]| Measured {
            pp: Stats::from_secs(plan.n_prompt, &pp),
            tg: Stats::from_secs(plan.n_gen, &tg),
            ttft: Stats::from_samples(ttft),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::runner::PupilRunner;

    #[test]
    fn tokens_cycle_through_the_text() {
        let plan = Plan { n_prompt: 5, n_gen: 3, repetitions: 1 };
        let t = Tokens::cycled(&[1, 2, 3], &plan);
        assert_eq!((t.prompt, t.generate), (vec![1, 2, 3, 1, 2], vec![3, 1, 2]));
        assert_eq!(Tokens::cycled(&[], &plan).prompt, Vec::<u32>::new());
        assert_eq!(plan.n_ctx(), 5);
    }

    /// A runner that records what it is asked, to hold the definitions to their words.
    struct Recorder {
        calls: Vec<(usize, usize, std::ops::Range<usize>)>,
        clears: usize,
        backend: crate::runner::Backend,
    }

    impl Runner for Recorder {
        fn backend(&self) -> crate::runner::Backend {
            self.backend
        }
        fn n_vocab(&self) -> usize {
            4
        }
        fn n_ctx(&self) -> usize {
            16
        }
        fn n_batch(&self) -> usize {
            16
        }
        fn n_seq(&self) -> usize {
            1
        }
        fn clear(&mut self) {
            self.clears += 1;
        }
        fn truncate(&mut self, _: usize) -> Result<(), RunnerError> {
            Ok(())
        }
        fn forward(
            &mut self,
            tokens: &[u32],
            pos: usize,
            wanted: std::ops::Range<usize>,
            logits: &mut [f32],
        ) -> Result<(), RunnerError> {
            assert_eq!(logits.len(), wanted.len() * 4);
            self.calls.push((tokens.len(), pos, wanted));
            Ok(())
        }
        fn forward_seqs(&mut self, _: &[(usize, &[u32])], _: &mut [f32]) -> Result<(), RunnerError> {
            unreachable!()
        }
        fn copy_seq(&mut self, _: usize, _: usize) -> Result<(), RunnerError> {
            unreachable!()
        }
        fn footprint(&self) -> crate::runner::Footprint {
            unreachable!()
        }
    }

    #[test]
    fn pp_is_one_batch_and_tg_single_steps_from_an_empty_cache() {
        let plan = Plan { n_prompt: 6, n_gen: 3, repetitions: 2 };
        let tokens = Tokens::cycled(&[7, 8], &plan);
        let mut r = Recorder { calls: Vec::new(), clears: 0, backend: crate::runner::Backend::Pupil };
        let m = measure(&plan, &tokens, &mut [&mut r], |_| {}).unwrap();
        // A warm-up round and two measured ones, each: pp then tg, each from an empty cache.
        assert_eq!(r.clears, 6);
        let round = [(6, 0, 5..6), (1, 0, 0..1), (1, 1, 0..1), (1, 2, 0..1)];
        assert_eq!(r.calls, [round.clone(), round.clone(), round].concat());
        let m = &m[0];
        assert_eq!(m.pp.as_ref().unwrap().samples.len(), 2);
        assert_eq!(m.tg.as_ref().unwrap().samples.len(), 2);
        assert!(m.ttft.as_ref().unwrap().median > 0.0);
    }

    #[test]
    fn runs_beside_llama_cpp_start_on_an_idle_cpu_and_pupil_alone_waits_for_nothing() {
        use crate::runner::Backend;
        let plan = Plan { n_prompt: 2, n_gen: 1, repetitions: 1 };
        let tokens = Tokens::cycled(&[7, 8], &plan);
        let recorder = |backend| Recorder { calls: Vec::new(), clears: 0, backend };
        let (mut a, mut b) = (recorder(Backend::Pupil), recorder(Backend::Pupil));
        let start = Instant::now();
        measure(&plan, &tokens, &mut [&mut a, &mut b], |_| {}).unwrap();
        assert!(start.elapsed() < SETTLE, "two pupil runners waited");
        let (mut a, mut b) = (recorder(Backend::Pupil), recorder(Backend::Llama));
        let start = Instant::now();
        measure(&plan, &tokens, &mut [&mut a, &mut b], |_| {}).unwrap();
        // Two rounds (warm-up, one measured) of pp and tg on both: eight runs, each after a wait.
        assert!(start.elapsed() >= SETTLE * 8);
    }

    /// A small synthetic llama of `n_layer` layers of `dtype`, written into a directory of
    /// its own (`name`) and opened; the caller removes the directory.
    fn synth_llama(name: &str, n_layer: usize, dtype: crate::kernels::DType) -> (std::path::PathBuf, Model) {
        use crate::model::Arch;
        use crate::model::synth::{Synth, SynthModel};
        let dir = std::env::temp_dir().join(format!("pupil-speed-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tiny.gguf");
        SynthModel::build(&Synth { n_layer, ..Synth::new(Arch::Llama, dtype) }, None).unwrap().write(&path).unwrap();
        let model = Model::open(&path).unwrap();
        (dir, model)
    }

    #[test]
    fn a_real_model_measures_positive_speeds() {
        let (dir, model) = synth_llama("one", 1, crate::kernels::DType::Q8_0);
        let plan = Plan { n_prompt: 8, n_gen: 4, repetitions: 1 };
        let mut r = PupilRunner::new(&model, &plan.runner_options()).unwrap();
        let m = measure(&plan, &Tokens::cycled(&[3, 4, 5], &plan), &mut [&mut r], |_| {}).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (pp, tg, ttft) = (&m[0].pp.as_ref().unwrap(), m[0].tg.as_ref().unwrap(), m[0].ttft.as_ref().unwrap());
        assert!(pp.median > 0.0 && tg.median > 0.0);
        // TTFT covers the prompt's pass: at least n_prompt / pp.
        assert!(ttft.median >= 8.0 / pp.max * 0.999, "{ttft:?} {pp:?}");
    }

    /// Several sequences in one batch give each sequence the bits it gets alone (the kernels
    /// are batch-invariant), after a prompt copied from sequence 0; and the test measures.
    #[test]
    fn sequences_decode_together_as_they_do_alone() {
        let (dir, model) = synth_llama("seq", 2, crate::kernels::DType::Q4_0);
        let par = Parallel { n_seq: 3, depth: 8, n_gen: 4, repetitions: 1 };
        let opts = RunnerOptions { threads: Some(1), ..par.runner_options() };
        let mut many = PupilRunner::new(&model, &opts).unwrap();
        let mut alone = PupilRunner::new(&model, &RunnerOptions { n_seq: 1, ..opts }).unwrap();
        let n_vocab = many.n_vocab();
        let prompt = [5u32, 6, 7, 8, 9, 10, 11, 12];
        let mut logits = vec![0.0; 3 * n_vocab];
        many.forward_seqs(&[(0, &prompt)], &mut logits[..n_vocab]).unwrap();
        many.copy_seq(0, 1).unwrap();
        many.copy_seq(0, 2).unwrap();
        let next = [[20u32], [21], [22]];
        many.forward_seqs(&[(0, &next[0]), (1, &next[1]), (2, &next[2])], &mut logits).unwrap();
        let mut one = vec![0.0; n_vocab];
        for (s, t) in next.iter().enumerate() {
            alone.clear();
            alone.forward(&prompt, 0, 7..8, &mut one).unwrap();
            alone.forward(t, 8, 0..1, &mut one).unwrap();
            assert!(one == logits[s * n_vocab..][..n_vocab], "sequence {s} differs from its run alone");
        }
        // Bad batches are refused, changing nothing.
        assert!(many.forward_seqs(&[(3, &next[0])], &mut logits[..n_vocab]).is_err());
        assert!(many.forward_seqs(&[(0, &next[0]), (0, &next[1])], &mut logits[..2 * n_vocab]).is_err());
        assert!(many.copy_seq(1, 1).is_err());
        let tokens = Tokens { prompt: prompt.to_vec(), generate: vec![1, 2, 3, 4] };
        let m = measure_parallel(&par, &[1, 3], &tokens, &mut [&mut many], |_| {}).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(m[0].iter().all(|s| s.as_ref().is_some_and(|s| s.median > 0.0)), "{m:?}");
    }
}
