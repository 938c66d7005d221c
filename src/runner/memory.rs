//! The process's resident memory, as `/proc/self/status` states it (Linux): what loading a
//! model costs, for `pupil bench` and `pupil compare` alike.

/// Resident bytes now (`VmRSS`); `None` where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    proc_status("VmRSS")
}

/// The most resident bytes since the process started or [`reset_peak`] (`VmHWM`).
pub fn peak_resident_bytes() -> Option<u64> {
    proc_status("VmHWM")
}

/// Resets the peak to the current resident size (writing `5` to `/proc/self/clear_refs`,
/// Linux 4.0+); `false` where the kernel refuses, and the peak then covers earlier work too.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `/proc/self/status` field in bytes.
fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = super::resident_bytes().expect("VmRSS");
            let hwm = super::peak_resident_bytes().expect("VmHWM");
            assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
        }
    }
}
