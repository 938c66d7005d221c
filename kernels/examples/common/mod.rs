//! What the kernel examples share: their arguments and their test matrices.
#![allow(dead_code)]

use pupil_kernels::DType;

/// The weight type (argument 1, any case) and the numbers after it (arguments 2..), each
/// with its default.
pub fn args<const N: usize>(dtype: DType, numbers: [usize; N]) -> (DType, [usize; N]) {
    let args: Vec<String> = std::env::args().collect();
    let dtype = args
        .get(1)
        .map(|s| *DType::ALL.iter().find(|t| format!("{t}").eq_ignore_ascii_case(s)).expect("dtype"))
        .unwrap_or(dtype);
    let numbers = std::array::from_fn(|i| args.get(i + 2).map_or(numbers[i], |s| s.parse().expect("a number")));
    (dtype, numbers)
}

/// A smooth signal, `len` values: quantized, it gives real blocks (finite scales, which the
/// packers read).
pub fn signal(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i as f32) * 0.618).sin() * 0.1).collect()
}

/// `x` (`rows` rows) quantized to `dtype` with the chosen tier's quantizer, in a buffer
/// aligned for any block type; the bytes are its first `rows * row_bytes`.
pub fn quantized(dtype: DType, x: &[f32], rows: usize) -> Vec<u64> {
    let rb = dtype.row_bytes((x.len() / rows) as u64).unwrap() as usize;
    let mut w = vec![0u64; (rows * rb).div_ceil(8)];
    let quantize = pupil_kernels::cpu::ops(dtype).unwrap().quantize.expect("a quantizer");
    quantize(x, &mut bytemuck::cast_slice_mut::<u64, u8>(&mut w)[..rows * rb]).unwrap();
    w
}
