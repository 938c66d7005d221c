//! The recipe on hand-made tensor lists, checked against what llama.cpp's rules give.

use pupil_kernels::DType;

use super::*;

/// A dense model's tensors as `(name, dims)`, in file order: `n_layer` blocks of width `d`
/// and FFN width `ff`, with or without `output.weight`.
fn model(n_layer: usize, d: u64, ff: u64, tied: bool) -> Vec<(String, Vec<u64>)> {
    let mut t: Vec<(String, Vec<u64>)> = vec![("output_norm.weight".into(), vec![d])];
    if !tied {
        t.insert(0, ("output.weight".into(), vec![d, 1000]));
    }
    t.push(("token_embd.weight".into(), vec![d, 1000]));
    for i in 0..n_layer {
        for (name, dims) in [
            ("attn_k.weight", vec![d, d / 4]),
            ("attn_norm.weight", vec![d]),
            ("attn_output.weight", vec![d, d]),
            ("attn_q.weight", vec![d, d]),
            ("attn_v.weight", vec![d, d / 4]),
            ("ffn_down.weight", vec![ff, d]),
            ("ffn_gate.weight", vec![d, ff]),
            ("ffn_norm.weight", vec![d]),
            ("ffn_up.weight", vec![d, ff]),
        ] {
            t.push((format!("blk.{i}.{name}"), dims));
        }
    }
    t
}

fn hparams(n_layer: i64, n_head: i64, n_head_kv: i64) -> Hparams {
    Hparams { arch: "llama".into(), n_layer, n_head, n_head_kv, n_expert: 0 }
}

/// The type of every tensor under `ftype`, by name.
fn types(ftype: FileType, hp: Hparams, tensors: &[(String, Vec<u64>)]) -> Vec<(String, DType, Option<DType>)> {
    let mut r = Recipe::new(ftype, false, hp, tensors.iter().map(|(n, _)| n.as_str()));
    tensors
        .iter()
        .map(|(n, dims)| {
            let c = r.select(n, dims, DType::F32).unwrap();
            (n.clone(), c.dtype, c.fell_back_from)
        })
        .collect()
}

fn of(types: &[(String, DType, Option<DType>)], name: &str) -> DType {
    types.iter().find(|(n, ..)| n == name).map(|t| t.1).unwrap()
}

#[test]
fn q4_k_m_gives_more_bits_to_output_and_every_third_middle_layer() {
    let t = types(FileType::Q4_K_M, hparams(32, 32, 8), &model(32, 4096, 11008, false));
    assert_eq!(of(&t, "output.weight"), DType::Q6_K);
    assert_eq!(of(&t, "token_embd.weight"), DType::Q4_K);
    assert_eq!(of(&t, "output_norm.weight"), DType::F32);
    // use_more_bits(i, 32): i < 4, i >= 28, or (i - 4) % 3 == 2.
    let more: Vec<usize> = (0..32).filter(|&i| i < 4 || i >= 28 || (i >= 4 && (i - 4) % 3 == 2)).collect();
    assert_eq!(&more[4..8], [6, 9, 12, 15]);
    for i in 0..32 {
        let want = if more.contains(&i) { DType::Q6_K } else { DType::Q4_K };
        assert_eq!(of(&t, &format!("blk.{i}.attn_v.weight")), want, "attn_v {i}");
        assert_eq!(of(&t, &format!("blk.{i}.ffn_down.weight")), want, "ffn_down {i}");
        assert_eq!(of(&t, &format!("blk.{i}.attn_q.weight")), DType::Q4_K);
        assert_eq!(of(&t, &format!("blk.{i}.attn_norm.weight")), DType::F32);
    }
}

#[test]
fn q3_k_m_and_q4_k_s_bump_the_first_attn_v_layers() {
    let m = model(8, 256, 512, false);
    let t = types(FileType::Q3_K_M, hparams(8, 4, 4), &m);
    let v: Vec<DType> = (0..8).map(|i| of(&t, &format!("blk.{i}.attn_v.weight"))).collect();
    assert_eq!(&v[..3], [DType::Q5_K, DType::Q5_K, DType::Q4_K]);
    assert_eq!(of(&t, "blk.0.attn_output.weight"), DType::Q4_K);
    assert_eq!(of(&t, "blk.0.ffn_down.weight"), DType::Q4_K); // 0 < 8/16 is false
    assert_eq!(of(&t, "blk.0.attn_q.weight"), DType::Q3_K);
    let t = types(FileType::Q4_K_S, hparams(8, 4, 4), &m);
    let v: Vec<DType> = (0..8).map(|i| of(&t, &format!("blk.{i}.attn_v.weight"))).collect();
    assert_eq!(v, [[DType::Q5_K; 4], [DType::Q4_K; 4]].concat());
    assert_eq!(of(&t, "blk.0.ffn_down.weight"), DType::Q5_K);
    assert_eq!(of(&t, "blk.1.ffn_down.weight"), DType::Q4_K);
}

#[test]
fn rows_that_are_not_whole_super_blocks_fall_back() {
    // 640 columns: whole 32-blocks, not 256-blocks. 880: not even 32-blocks.
    let m = model(8, 640, 880, true);
    let t = types(FileType::Q4_K_M, hparams(8, 5, 1), &m);
    // Tied embeddings follow the output rule: Q8_0 when Q6_K does not fit, not a fallback.
    let emb = t.iter().find(|(n, ..)| n == "token_embd.weight").unwrap();
    assert_eq!((emb.1, emb.2), (DType::Q8_0, None));
    let q = t.iter().find(|(n, ..)| n == "blk.1.attn_q.weight").unwrap();
    assert_eq!((q.1, q.2), (DType::Q5_0, Some(DType::Q4_K)));
    let v = t.iter().find(|(n, ..)| n == "blk.0.attn_v.weight").unwrap();
    assert_eq!((v.1, v.2), (DType::Q8_0, Some(DType::Q6_K)));
    let down = t.iter().find(|(n, ..)| n == "blk.1.ffn_down.weight").unwrap();
    assert_eq!((down.1, down.2), (DType::F16, Some(DType::Q4_K)));
    let t = types(FileType::Q5_K_S, hparams(8, 5, 1), &m);
    assert_eq!(of(&t, "blk.1.attn_q.weight"), DType::Q5_1);
    let t = types(FileType::Q4_0, hparams(8, 5, 1), &m);
    assert_eq!(of(&t, "blk.1.ffn_down.weight"), DType::F16);
    assert_eq!(of(&t, "token_embd.weight"), DType::Q8_0);
}

#[test]
fn float_file_types_convert_every_matrix_and_keep_norms() {
    let m = model(2, 256, 512, false);
    for (ftype, dtype) in [(FileType::F16, DType::F16), (FileType::BF16, DType::BF16), (FileType::Q8_0, DType::Q8_0)] {
        let t = types(ftype, hparams(2, 4, 4), &m);
        assert_eq!(of(&t, "output.weight"), dtype);
        assert_eq!(of(&t, "blk.1.ffn_down.weight"), dtype);
        assert_eq!(of(&t, "blk.1.ffn_norm.weight"), DType::F32);
    }
}

#[test]
fn q2_k_looks_at_grouped_query_attention() {
    let m = model(8, 256, 512, false);
    assert_eq!(of(&types(FileType::Q2_K, hparams(8, 8, 2), &m), "blk.3.attn_v.weight"), DType::Q4_K);
    assert_eq!(of(&types(FileType::Q2_K, hparams(8, 8, 4), &m), "blk.3.attn_v.weight"), DType::Q3_K);
}

#[test]
fn type_names_are_llama_quantizes() {
    assert_eq!(parse_type("q5_k_s").unwrap(), FileType::Q5_K_S);
    assert_eq!(parse_type("Q5_K").unwrap(), FileType::Q5_K_M);
    assert_eq!(parse_type("bf16").unwrap(), FileType::BF16);
    let e = parse_type("Q4_K_X").unwrap_err();
    assert!(matches!(e, QuantizeError::UnknownType { .. }));
    assert!(e.to_string().contains("Q4_K_M, Q5_K"), "{e}");
    assert!(matches!(parse_type("IQ2_XXS"), Err(QuantizeError::UnsupportedType { .. })));
    assert!(matches!(parse_type("Q2_K_S"), Err(QuantizeError::UnsupportedType { .. })));
    for &(name, ftype) in TYPE_NAMES {
        assert!(default_type(ftype).is_some(), "{name}");
    }
}
