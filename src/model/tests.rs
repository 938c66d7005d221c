//! Load-time and run-time errors without the oracle: every bad input is a typed error, never a
//! panic; and the batch, cache and sequence bookkeeping agree with running token by token.

use pupil_kernels::DType;

use super::synth::{Synth, SynthModel};
use super::*;
use crate::gguf::{Gguf, Value};

fn small(arch: Arch) -> Synth {
    Synth { n_vocab: 300, n_layer: 2, ..Synth::new(arch, DType::Q8_0) }
}

fn build(spec: &Synth) -> SynthModel {
    SynthModel::build(spec, None).unwrap()
}

fn config_of(m: &SynthModel) -> Result<Config, ModelError> {
    let mut m = m.clone();
    m.tensors.clear();
    Config::from_gguf(&Gguf::parse(&m.writer()?.to_bytes())?)
}

fn open(m: &SynthModel) -> Result<Model, ModelError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    m.write(&path)?;
    Model::open(&path)
}

#[test]
fn model_is_shareable_across_threads() {
    fn check<T: Send + Sync>() {}
    check::<Model>();
    check::<KvCache>();
    check::<Scratch>();
}

#[test]
fn defaults_follow_llama_cpp() {
    let g2 = config_of(&build(&Synth { n_layer: 4, ..small(Arch::Gemma2) })).unwrap();
    assert_eq!((g2.attn_softcap, g2.final_softcap, g2.sliding_window), (Some(50.0), Some(30.0), Some(4096)));
    assert_eq!(g2.swa_layers, [true, false, true, false]);
    assert_eq!(g2.rope_base_swa, g2.rope_base);

    let g3 =
        config_of(&build(&Synth { n_layer: 12, sliding_window: Some(512), rope_base: 1e6, ..small(Arch::Gemma3) }))
            .unwrap();
    let globals: Vec<usize> = (0..12).filter(|&i| !g3.swa_layers[i]).collect();
    assert_eq!(globals, [5, 11], "every sixth Gemma 3 layer is global");
    assert_eq!((g3.rope_base, g3.rope_base_swa, g3.final_softcap, g3.attn_softcap), (1e6, 10000.0, None, None));
    assert_eq!(g3.attn_scale, 1.0 / 8.0);

    let no_window = config_of(&build(&small(Arch::Gemma3))).unwrap();
    assert!(no_window.swa_layers.iter().all(|&s| !s) && no_window.sliding_window.is_none());

    let mut m = build(&Synth { n_layer: 3, sliding_window: Some(8), ..small(Arch::Gemma3) });
    m.set("gemma3.attention.sliding_window_pattern", Value::from(vec![false, true, true]));
    m.set("gemma3.rope.freq_base_swa", Value::F32(5000.0));
    let c = config_of(&m).unwrap();
    assert_eq!((c.swa_layers.as_slice(), c.rope_base_swa), (&[false, true, true][..], 5000.0));

    let mut m = build(&small(Arch::Llama));
    m.set("llama.rope.scaling.type", Value::from("linear")).set("llama.rope.scaling.factor", Value::F32(4.0));
    assert_eq!(config_of(&m).unwrap().rope_freq_scale, 0.25);
    m.set("llama.rope.scaling.type", Value::from("none"));
    assert_eq!(config_of(&m).unwrap().rope_freq_scale, 1.0);
}

#[test]
fn bad_metadata_is_a_typed_error_naming_the_key() {
    let good = build(&small(Arch::Qwen3));
    let mut m = good.clone();
    m.metadata.retain(|(k, _)| k != "qwen3.embedding_length");
    assert!(matches!(config_of(&m), Err(ModelError::MissingKey { key }) if key == "qwen3.embedding_length"));

    let mut m = good.clone();
    m.metadata.retain(|(k, _)| k != "qwen3.attention.layer_norm_rms_epsilon");
    assert!(matches!(config_of(&m), Err(ModelError::MissingKey { key }) if key.ends_with("layer_norm_rms_epsilon")));

    let mut m = good.clone();
    m.set("qwen3.block_count", Value::from("two"));
    assert!(matches!(config_of(&m), Err(ModelError::BadKey { key, .. }) if key == "qwen3.block_count"));

    let mut m = good.clone();
    m.set("qwen3.attention.head_count", Value::I32(-4));
    assert!(matches!(config_of(&m), Err(ModelError::BadKey { key, .. }) if key == "qwen3.attention.head_count"));

    let mut m = good.clone();
    m.set("qwen3.attention.head_count_kv", Value::U32(3));
    assert!(matches!(config_of(&m), Err(ModelError::BadKey { key, .. }) if key == "qwen3.attention.head_count_kv"));

    let mut m = good.clone();
    m.set("qwen3.rope.freq_base", Value::Bool(true));
    assert!(matches!(config_of(&m), Err(ModelError::BadKey { key, .. }) if key == "qwen3.rope.freq_base"));

    let mut m = good.clone();
    m.set("qwen3.rope.scaling.type", Value::from("yarn"));
    assert!(matches!(config_of(&m), Err(ModelError::Unsupported { what }) if what.contains("yarn")));

    let mut m = good.clone();
    m.metadata.retain(|(k, _)| k != "tokenizer.ggml.tokens");
    assert!(matches!(config_of(&m), Err(ModelError::MissingKey { key }) if key == "tokenizer.ggml.tokens"));

    let mut m = good.clone();
    m.set("general.architecture", Value::from("mamba"));
    let err = config_of(&m).unwrap_err();
    assert!(matches!(&err, ModelError::UnknownArchitecture { arch } if arch == "mamba"));
    assert!(err.to_string().contains("gemma3"), "the message lists what is supported: {err}");

    let mut m = good;
    m.metadata.retain(|(k, _)| k != "general.architecture");
    assert!(matches!(config_of(&m), Err(ModelError::NoArchitecture)));
}

#[test]
fn bad_tensors_are_typed_errors_naming_the_tensor() {
    let good = build(&small(Arch::Gemma3));
    open(&good).unwrap();

    let mut m = good.clone();
    m.tensors.retain(|t| t.name != "blk.1.attn_k_norm.weight");
    assert!(
        matches!(open(&m), Err(ModelError::MissingTensor { name, expected }) if name == "blk.1.attn_k_norm.weight" && expected == [64])
    );

    let mut m = good.clone();
    let t = m.tensor_mut("blk.0.ffn_up.weight").unwrap();
    t.dims = vec![256, 256];
    t.data.truncate(t.data.len() / 2);
    let err = open(&m).unwrap_err();
    assert!(
        matches!(&err, ModelError::TensorShape { name, expected, found } if name == "blk.0.ffn_up.weight" && expected == &[256, 512] && found == &[256, 256])
    );
    assert!(err.to_string().contains("blk.0.ffn_up.weight"));

    let mut m = good.clone();
    let t = m.tensor_mut("blk.1.ffn_gate.weight").unwrap();
    t.dtype = DType::IQ2_XXS;
    t.data = vec![0; DType::IQ2_XXS.row_bytes(256).unwrap() as usize * 512];
    assert!(
        matches!(open(&m), Err(ModelError::UnsupportedDType { name, dtype: DType::IQ2_XXS }) if name == "blk.1.ffn_gate.weight")
    );

    // Optional tensors may be absent; required ones of another architecture are not needed.
    let llama = build(&Synth { tied_output: true, ..small(Arch::Llama) });
    assert!(llama.tensors.iter().all(|t| t.name != "output.weight"));
    open(&llama).unwrap();
}

fn logits_one_batch(m: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut cache = m.new_cache(Some(64), 1, KvType::F32);
    let mut scratch = m.new_scratch(tokens.len(), &cache);
    let mut batch = Batch::new();
    batch.push_sequence(tokens, 0, 0, true);
    let mut logits = vec![0.0; tokens.len() * m.config().n_vocab];
    m.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap();
    logits
}

#[test]
fn decoding_token_by_token_equals_one_batch() {
    for arch in Arch::ALL {
        let spec = Synth { sliding_window: Some(4), biases: true, ..small(*arch) };
        let m = open(&build(&spec)).unwrap();
        let tokens: Vec<u32> = (0..12).map(|i| 3 + (i * 37) % 290).collect();
        let all = logits_one_batch(&m, &tokens);
        let nv = m.config().n_vocab;
        let mut cache = m.new_cache(Some(64), 2, KvType::F32);
        let mut scratch = m.new_scratch(1, &cache);
        let mut batch = Batch::new();
        let mut logits = vec![0.0; nv];
        for (p, &t) in tokens.iter().enumerate() {
            batch.clear();
            batch.push(t, p as u32, 1, true);
            m.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap();
            assert_eq!(&logits[..], &all[p * nv..][..nv], "{arch:?} position {p}");
        }
        assert_eq!((cache.len(0), cache.len(1)), (0, tokens.len()));
        assert!(all.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn run_time_errors_leave_the_cache_untouched() {
    let m = open(&build(&small(Arch::Llama))).unwrap();
    let nv = m.config().n_vocab;
    let mut cache = m.new_cache(Some(8), 2, KvType::F16);
    assert_eq!(cache.n_ctx(), 8);
    let mut scratch = m.new_scratch(4, &cache);
    let mut logits = vec![0.0; nv];
    let mut run = |b: &Batch, cache: &mut KvCache, logits: &mut [f32]| m.forward(b, cache, &mut scratch, logits);

    let mut b = Batch::new();
    b.push_sequence(&[5, 6, 7, 8], 0, 0, false);
    run(&b, &mut cache, &mut logits).unwrap();
    b.clear();
    b.push_sequence(&[5, 6, 7, 8], 4, 0, false);
    run(&b, &mut cache, &mut logits).unwrap();
    assert_eq!(cache.len(0), 8);

    let mut full = Batch::new();
    full.push(9, 8, 0, true);
    assert!(matches!(run(&full, &mut cache, &mut logits), Err(ModelError::ContextFull { seq: 0, pos: 8, n_ctx: 8 })));

    let mut gap = Batch::new();
    gap.push(9, 0, 1, false);
    gap.push(9, 2, 1, true);
    assert!(matches!(run(&gap, &mut cache, &mut logits), Err(ModelError::PositionGap { seq: 1, pos: 2, len: 1 })));
    assert_eq!(cache.len(1), 0, "a refused batch writes nothing");

    let mut seq = Batch::new();
    seq.push(9, 0, 2, true);
    assert!(matches!(run(&seq, &mut cache, &mut logits), Err(ModelError::BadSequence { index: 0, seq: 2, n_seq: 2 })));

    let mut tok = Batch::new();
    tok.push(nv as u32, 0, 1, true);
    assert!(matches!(run(&tok, &mut cache, &mut logits), Err(ModelError::BadToken { .. })));

    let mut big = Batch::new();
    big.push_sequence(&[3; 5], 0, 1, false);
    assert!(matches!(run(&big, &mut cache, &mut logits), Err(ModelError::BatchTooLarge { n: 5, max: 4 })));

    let mut two = Batch::new();
    two.push_sequence(&[3, 4], 0, 1, true);
    assert!(matches!(run(&two, &mut cache, &mut logits), Err(ModelError::LogitsSize { .. })));
    assert_eq!((cache.len(0), cache.len(1)), (8, 0));

    // Rolling back (speculative decoding) and rewriting is allowed.
    cache.truncate(0, 6).unwrap();
    let mut again = Batch::new();
    again.push_sequence(&[7, 8], 6, 0, false);
    run(&again, &mut cache, &mut logits).unwrap();
    cache.clear(0);
    assert!(cache.is_empty());

    let other = open(&build(&Synth { n_layer: 3, ..small(Arch::Llama) })).unwrap();
    let mut other_cache = other.new_cache(Some(8), 1, KvType::F16);
    let mut b = Batch::new();
    b.push(3, 0, 0, true);
    assert!(matches!(
        m.forward(&b, &mut other_cache, &mut m.new_scratch(1, &cache), &mut logits),
        Err(ModelError::Mismatch { .. })
    ));
}
