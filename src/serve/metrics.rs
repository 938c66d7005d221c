//! What the server counts, in Prometheus's text format: tokens and seconds of prompt and
//! generation, requests running and waiting, KV cache use, prefix-cache hits, time to first
//! token and time per output token; and the gauges Kubernetes inference gateways route by,
//! under the names vLLM gives them (`vllm:num_requests_waiting`, `vllm:num_requests_running`,
//! `vllm:gpu_cache_usage_perc`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Latency buckets, seconds: 5 ms to 60 s.
const SECONDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0];

/// The server's metrics; cheap to update from the engine thread, read by `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Prompt tokens computed (prefix-cache hits not included).
    pub prompt_tokens: Counter,
    /// Prompt tokens taken from a slot's cache instead of being computed.
    pub prefix_hit_tokens: Counter,
    /// Tokens generated.
    pub generation_tokens: Counter,
    /// Requests finished (any reason).
    pub requests_finished: Counter,
    /// Requests refused because the queue was full.
    pub requests_rejected: Counter,
    /// Requests holding a slot.
    pub running: Gauge,
    /// Requests waiting for a slot.
    pub waiting: Gauge,
    /// Fraction of the KV cache's bytes holding running requests' positions, 0 to 1.
    pub kv_usage: Gauge<f64, AtomicU64>,
    /// Forward passes run.
    pub steps: Counter,
    /// Seconds from a request's arrival to its first token.
    pub ttft: Histogram,
    /// Seconds between a request's consecutive tokens.
    pub tpot: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered under `pupil_` names and the vLLM aliases.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            prompt_tokens: Counter::default(),
            prefix_hit_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            requests_finished: Counter::default(),
            requests_rejected: Counter::default(),
            running: Gauge::default(),
            waiting: Gauge::default(),
            kv_usage: Gauge::default(),
            steps: Counter::default(),
            ttft: Histogram::new(SECONDS),
            tpot: Histogram::new(SECONDS),
            registry: Registry::default(),
        };
        let p = &mut registry;
        p.register("pupil_prompt_tokens", "Prompt tokens computed", m.prompt_tokens.clone());
        p.register("pupil_prefix_cache_hit_tokens", "Prompt tokens reused from a slot's cache", m.prefix_hit_tokens.clone());
        p.register("pupil_generation_tokens", "Tokens generated", m.generation_tokens.clone());
        p.register("pupil_requests_finished", "Requests finished", m.requests_finished.clone());
        p.register("pupil_requests_rejected", "Requests refused with 429 (queue full)", m.requests_rejected.clone());
        p.register("pupil_requests_running", "Requests holding a slot", m.running.clone());
        p.register("pupil_requests_waiting", "Requests waiting for a slot", m.waiting.clone());
        p.register("pupil_kv_cache_usage_ratio", "Fraction of the KV cache holding running requests", m.kv_usage.clone());
        p.register("pupil_steps", "Forward passes run", m.steps.clone());
        p.register("pupil_time_to_first_token_seconds", "Seconds to a request's first token", m.ttft.clone());
        p.register("pupil_time_per_output_token_seconds", "Seconds between a request's tokens", m.tpot.clone());
        // The names vLLM exports, which inference gateways read.
        p.register("vllm:num_requests_running", "Requests holding a slot", m.running.clone());
        p.register("vllm:num_requests_waiting", "Requests waiting for a slot", m.waiting.clone());
        p.register("vllm:gpu_cache_usage_perc", "Fraction of the KV cache holding running requests", m.kv_usage.clone());
        Metrics { registry, ..m }
    }

    /// The text exposition (`text/plain; version=0.0.4`, OpenMetrics-compatible).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_the_vllm_aliases_render() {
        let m = Metrics::new();
        m.generation_tokens.inc_by(7);
        m.waiting.set(3);
        m.kv_usage.set(0.25);
        m.ttft.observe(0.2);
        let text = m.render();
        for needle in [
            "pupil_generation_tokens_total 7",
            "vllm:num_requests_waiting 3",
            "vllm:gpu_cache_usage_perc 0.25",
            "pupil_time_to_first_token_seconds_count 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
