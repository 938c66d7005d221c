//! `general.file_type`: the quantization recipe a whole file was made with, as llama.cpp
//! numbers them (`enum llama_ftype` in `llama.h`).
//!
//! ```
//! use pupil::gguf::FileType;
//! assert_eq!(FileType::from_id(15).map(|t| t.name()), Some("Q4_K_M"));
//! ```

macro_rules! file_types {
    ($( $name:ident = $id:literal, $label:literal; )*) => {
        /// A llama.cpp file type (the `general.file_type` metadata value).
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum FileType {
            $(
                #[doc = concat!("`", $label, "`")]
                $name,
            )*
        }

        impl FileType {
            /// Every file type llama.cpp still reads.
            pub const ALL: &'static [FileType] = &[$(FileType::$name),*];

            /// The id stored in `general.file_type`.
            pub const fn id(self) -> u32 {
                match self { $(FileType::$name => $id,)* }
            }

            /// The type for an id, `None` for ids llama.cpp never had or removed.
            pub const fn from_id(id: u32) -> Option<FileType> {
                match id { $($id => Some(FileType::$name),)* _ => None }
            }

            /// The name llama.cpp's tools print and take (`Q4_K_M`).
            pub const fn name(self) -> &'static str {
                match self { $(FileType::$name => $label,)* }
            }
        }
    };
}

file_types! {
    F32 = 0, "F32";
    F16 = 1, "F16";
    Q4_0 = 2, "Q4_0";
    Q4_1 = 3, "Q4_1";
    Q8_0 = 7, "Q8_0";
    Q5_0 = 8, "Q5_0";
    Q5_1 = 9, "Q5_1";
    Q2_K = 10, "Q2_K";
    Q3_K_S = 11, "Q3_K_S";
    Q3_K_M = 12, "Q3_K_M";
    Q3_K_L = 13, "Q3_K_L";
    Q4_K_S = 14, "Q4_K_S";
    Q4_K_M = 15, "Q4_K_M";
    Q5_K_S = 16, "Q5_K_S";
    Q5_K_M = 17, "Q5_K_M";
    Q6_K = 18, "Q6_K";
    IQ2_XXS = 19, "IQ2_XXS";
    IQ2_XS = 20, "IQ2_XS";
    Q2_K_S = 21, "Q2_K_S";
    IQ3_XS = 22, "IQ3_XS";
    IQ3_XXS = 23, "IQ3_XXS";
    IQ1_S = 24, "IQ1_S";
    IQ4_NL = 25, "IQ4_NL";
    IQ3_S = 26, "IQ3_S";
    IQ3_M = 27, "IQ3_M";
    IQ2_S = 28, "IQ2_S";
    IQ2_M = 29, "IQ2_M";
    IQ4_XS = 30, "IQ4_XS";
    IQ1_M = 31, "IQ1_M";
    BF16 = 32, "BF16";
    TQ1_0 = 36, "TQ1_0";
    TQ2_0 = 37, "TQ2_0";
    MXFP4_MOE = 38, "MXFP4_MOE";
    NVFP4 = 39, "NVFP4";
    Q1_0 = 40, "Q1_0";
    Q2_0 = 41, "Q2_0";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_unknown() {
        for &t in FileType::ALL {
            assert_eq!(FileType::from_id(t.id()), Some(t));
        }
        for removed in [4, 5, 6, 33, 34, 35, 42, 1024] {
            assert_eq!(FileType::from_id(removed), None);
        }
    }
}
