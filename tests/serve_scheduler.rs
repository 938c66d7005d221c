//! The scheduler without HTTP, on the embedded distilled student: requests run together give
//! what each gives alone and what a plain session gives; cancelling frees the slot; a full
//! queue refuses.

use std::sync::Arc;

use pupil::generate::{Engine, GenerateParams, SessionOptions};
use pupil::model::Threads;
use pupil::request::StopReason;
use pupil::sample::SamplerConfig;
use pupil::serve::scheduler::{Event, Scheduler, SchedulerOptions, SubmitError, Submission};

const STUDENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/distill/student-q8_0.gguf");

fn engine() -> Arc<Engine> {
    Arc::new(Engine::load(STUDENT).unwrap())
}

fn opts(n_slots: usize) -> SchedulerOptions {
    SchedulerOptions { n_slots, n_ctx: Some(256), step_tokens: 64, max_queue: 64, ..SchedulerOptions::default() }
}

/// The text and stop reason of a request, run to its end.
fn collect(events: impl Iterator<Item = Event>) -> (String, StopReason, usize) {
    let mut text = String::new();
    for e in events {
        match e {
            Event::Text { text: t, .. } => text.push_str(&t),
            Event::Done { stop, tail, completion_tokens, .. } => {
                text.push_str(&tail);
                return (text, stop, completion_tokens);
            }
            Event::Failed { message } => panic!("request failed: {message}"),
            Event::Prompt { .. } => {}
        }
    }
    panic!("the events ended without Done");
}

fn prompts(engine: &Engine) -> Vec<Vec<u32>> {
    ["And God said", "In the beginning", "Then said Jesus unto them", "Blessed are the", "And it came to pass", "The LORD is my"]
        .iter()
        .map(|p| engine.tokenizer().encode(p, true, false))
        .collect()
}

fn sampled(seed: u64) -> GenerateParams {
    GenerateParams { max_tokens: Some(24), sampler: SamplerConfig { temperature: 0.9, seed, ..SamplerConfig::default() }, stop: Vec::new() }
}

#[test]
fn requests_run_together_give_what_each_gives_alone_and_what_a_session_gives() {
    let engine = engine();
    let prompts = prompts(&engine);
    let params = |i: usize| if i % 2 == 0 { GenerateParams::greedy(24) } else { sampled(i as u64) };

    let solo = Scheduler::start(Arc::clone(&engine), opts(1), Threads::new(1).unwrap()).unwrap();
    let alone: Vec<_> = prompts.iter().enumerate().map(|(i, p)| collect(solo.submit(Submission::new(p.clone(), params(i))).unwrap())).collect();

    // All at once on 3 slots: some wait, prompts are chunked across steps with others' decodes.
    let busy = Scheduler::start(Arc::clone(&engine), SchedulerOptions { step_tokens: 5, ..opts(3) }, Threads::new(2).unwrap()).unwrap();
    let streams: Vec<_> = prompts.iter().enumerate().map(|(i, p)| busy.submit(Submission::new(p.clone(), params(i))).unwrap()).collect();
    let together: Vec<_> = streams.into_iter().map(collect).collect();
    assert_eq!(together, alone);

    // A large step but prompt chunks of at most 2 tokens while any request decodes.
    let capped = SchedulerOptions { prefill_while_decoding: 2, ..opts(3) };
    let capped = Scheduler::start(Arc::clone(&engine), capped, Threads::new(2).unwrap()).unwrap();
    let streams: Vec<_> = prompts.iter().enumerate().map(|(i, p)| capped.submit(Submission::new(p.clone(), params(i))).unwrap()).collect();
    let together: Vec<_> = streams.into_iter().map(collect).collect();
    assert_eq!(together, alone);

    // Greedy and sampled alike match a plain session.
    for (i, p) in prompts.iter().enumerate() {
        let mut session = engine.session(SessionOptions { n_ctx: Some(256), ..SessionOptions::default() });
        let done = session.generate(p, &params(i), |_| true).unwrap();
        assert_eq!((done.text.as_str(), &done.stop), (alone[i].0.as_str(), &alone[i].1), "prompt {i}");
    }
}

#[test]
fn a_shared_prefix_is_reused_and_changes_nothing() {
    let engine = engine();
    let sched = Scheduler::start(Arc::clone(&engine), opts(2), Threads::new(1).unwrap()).unwrap();
    let system = engine.tokenizer().encode("And the LORD spake unto Moses, saying, Speak unto the children of Israel", true, false);
    let mut a = system.clone();
    a.extend(engine.tokenizer().encode(" and say", false, false));
    let first = collect(sched.submit(Submission::new(a.clone(), GenerateParams::greedy(16))).unwrap());
    let hits_before = sched.metrics().render();
    let second = collect(sched.submit(Submission::new(a, GenerateParams::greedy(16))).unwrap());
    assert_eq!(first, second);
    let text = sched.metrics().render();
    assert!(text.contains(&format!("pupil_prefix_cache_hit_tokens_total {}", system.len() + 1)), "{hits_before}\n{text}");
}

#[test]
fn a_dropped_request_frees_its_slot_and_a_full_queue_refuses() {
    let engine = engine();
    let sched = Scheduler::start(Arc::clone(&engine), SchedulerOptions { max_queue: 2, ..opts(1) }, Threads::new(1).unwrap()).unwrap();
    let p = engine.tokenizer().encode("And God said", true, false);
    let mut long = sched.submit(Submission::new(p.clone(), GenerateParams::greedy(200))).unwrap();
    assert!(matches!(long.next(), Some(Event::Text { .. })));
    // The only slot is busy: these wait, and the queue holds two.
    let waiting: Vec<_> = (0..2).map(|_| sched.submit(Submission::new(p.clone(), GenerateParams::greedy(4))).unwrap()).collect();
    assert!(matches!(sched.submit(Submission::new(p.clone(), GenerateParams::greedy(4))), Err(SubmitError::QueueFull { .. })));
    drop(long);
    for w in waiting {
        assert_eq!(collect(w).1, StopReason::MaxTokens);
    }
    assert!(matches!(sched.submit(Submission::new(vec![], GenerateParams::greedy(4))), Err(SubmitError::EmptyPrompt)));
    assert!(matches!(
        sched.submit(Submission::new(vec![1; 300], GenerateParams::greedy(4))),
        Err(SubmitError::PromptTooLong { n_prompt: 300, n_ctx: 256 })
    ));
    sched.shutdown();
    sched.join();
    assert!(matches!(sched.submit(Submission::new(p, GenerateParams::greedy(4))), Err(SubmitError::ShuttingDown)));
}

#[test]
fn max_tokens_zero_with_prompt_logprobs_scores_the_prompt() {
    let engine = engine();
    let sched = Scheduler::start(Arc::clone(&engine), opts(1), Threads::new(1).unwrap()).unwrap();
    let p = engine.tokenizer().encode("And God said, Let there be light: and there was light.", true, false);
    let sub = Submission { logprobs: Some(2), prompt_logprobs: true, ..Submission::new(p.clone(), GenerateParams::greedy(0)) };
    let events: Vec<Event> = sched.submit(sub).unwrap().collect();
    let Event::Prompt { tokens } = &events[0] else { panic!("{events:?}") };
    assert_eq!(tokens.len(), p.len());
    assert_eq!(tokens[0].logprob, None);
    assert!(tokens[1..].iter().all(|t| t.logprob.is_some_and(|l| l <= 0.0) && t.top.len() == 2));
    assert!(matches!(events.last(), Some(Event::Done { stop: StopReason::MaxTokens, completion_tokens: 0, .. })));
}
