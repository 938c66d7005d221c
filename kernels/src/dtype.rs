//! The table of ggml element types: ids as stored in GGUF, block sizes and byte sizes.
//!
//! Every type ggml has ever written to a GGUF file is listed, including the ones pupil has no
//! kernels for, so that a file reader can check tensor sizes and name an unsupported type
//! precisely instead of calling it unknown.
//!
//! ```
//! use pupil_kernels::DType;
//! let t = DType::from_id(12).unwrap();
//! assert_eq!(t, DType::Q4_K);
//! assert_eq!(t.row_bytes(2048), Some(2048 / 256 * 144));
//! ```

use std::fmt;

macro_rules! dtypes {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $block:literal, $bytes:literal; )*) => {
        /// A ggml element type (`enum ggml_type`), as stored in GGUF tensor infos.
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum DType {
            $( $(#[$doc])* $name, )*
        }

        impl DType {
            /// Every known type, in id order.
            pub const ALL: &'static [DType] = &[$(DType::$name),*];

            /// The ggml type id (`enum ggml_type` value).
            pub const fn id(self) -> u32 {
                match self { $(DType::$name => $id,)* }
            }

            /// The type with ggml id `id`, or `None` if ggml never defined it (or removed it).
            pub const fn from_id(id: u32) -> Option<DType> {
                match id { $($id => Some(DType::$name),)* _ => None }
            }

            /// Elements per block.
            pub const fn block_size(self) -> usize {
                match self { $(DType::$name => $block,)* }
            }

            /// Bytes per block.
            pub const fn type_size(self) -> usize {
                match self { $(DType::$name => $bytes,)* }
            }

            /// The name ggml and llama.cpp print (`Q4_K`, `F16`, ...).
            pub const fn name(self) -> &'static str {
                match self { $(DType::$name => stringify!($name),)* }
            }
        }
    };
}

dtypes! {
    /// 32-bit IEEE float.
    F32 = 0, 1, 4;
    /// 16-bit IEEE float.
    F16 = 1, 1, 2;
    /// 4-bit, one f16 scale per 32.
    Q4_0 = 2, 32, 18;
    /// 4-bit, f16 scale and min per 32.
    Q4_1 = 3, 32, 20;
    /// 5-bit, one f16 scale per 32.
    Q5_0 = 6, 32, 22;
    /// 5-bit, f16 scale and min per 32.
    Q5_1 = 7, 32, 24;
    /// 8-bit, one f16 scale per 32.
    Q8_0 = 8, 32, 34;
    /// 8-bit, f16 scale and f16 scaled sum per 32 (activations for Q4_1/Q5_1).
    Q8_1 = 9, 32, 36;
    /// 2-bit k-quant, 256 per super-block.
    Q2_K = 10, 256, 84;
    /// 3-bit k-quant.
    Q3_K = 11, 256, 110;
    /// 4-bit k-quant.
    Q4_K = 12, 256, 144;
    /// 5-bit k-quant.
    Q5_K = 13, 256, 176;
    /// 6-bit k-quant.
    Q6_K = 14, 256, 210;
    /// 8-bit k-quant with f32 scale and block sums (activations for k-quants).
    Q8_K = 15, 256, 292;
    /// i-quant (no pupil kernels).
    IQ2_XXS = 16, 256, 66;
    /// i-quant (no pupil kernels).
    IQ2_XS = 17, 256, 74;
    /// i-quant (no pupil kernels).
    IQ3_XXS = 18, 256, 98;
    /// i-quant (no pupil kernels).
    IQ1_S = 19, 256, 50;
    /// i-quant (no pupil kernels).
    IQ4_NL = 20, 32, 18;
    /// i-quant (no pupil kernels).
    IQ3_S = 21, 256, 110;
    /// i-quant (no pupil kernels).
    IQ2_S = 22, 256, 82;
    /// i-quant (no pupil kernels).
    IQ4_XS = 23, 256, 136;
    /// 8-bit integer.
    I8 = 24, 1, 1;
    /// 16-bit integer.
    I16 = 25, 1, 2;
    /// 32-bit integer.
    I32 = 26, 1, 4;
    /// 64-bit integer.
    I64 = 27, 1, 8;
    /// 64-bit float.
    F64 = 28, 1, 8;
    /// i-quant (no pupil kernels).
    IQ1_M = 29, 256, 56;
    /// bfloat16.
    BF16 = 30, 1, 2;
    /// ternary (no pupil kernels).
    TQ1_0 = 34, 256, 54;
    /// ternary (no pupil kernels).
    TQ2_0 = 35, 256, 66;
    /// microscaling FP4 (no pupil kernels).
    MXFP4 = 39, 32, 17;
    /// NVIDIA FP4 (no pupil kernels).
    NVFP4 = 40, 64, 36;
    /// 1-bit (no pupil kernels).
    Q1_0 = 41, 128, 18;
    /// 2-bit (no pupil kernels).
    Q2_0 = 42, 64, 18;
}

impl DType {
    /// Bytes taken by a row of `n` elements, or `None` if `n` is not a whole number of blocks
    /// or the size overflows.
    pub const fn row_bytes(self, n: u64) -> Option<u64> {
        let b = self.block_size() as u64;
        if n % b != 0 {
            return None;
        }
        (n / b).checked_mul(self.type_size() as u64)
    }

    /// Bits per element, as llama.cpp reports file types (4.5 for Q4_0).
    pub fn bits_per_element(self) -> f64 {
        self.type_size() as f64 * 8.0 / self.block_size() as f64
    }

    /// Whether pupil has reference kernels (dequantize and dot product) for this type.
    pub fn has_kernels(self) -> bool {
        crate::quant::ops(self).is_some()
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_unknown() {
        for &t in DType::ALL {
            assert_eq!(DType::from_id(t.id()), Some(t));
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, 1000] {
            assert_eq!(DType::from_id(removed), None);
        }
    }

    #[test]
    fn row_bytes_rejects_partial_blocks_and_overflow() {
        assert_eq!(DType::Q8_0.row_bytes(64), Some(68));
        assert_eq!(DType::Q8_0.row_bytes(33), None);
        assert_eq!(DType::F32.row_bytes(u64::MAX), None);
    }
}
