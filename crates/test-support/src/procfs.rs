//! What `/proc` tells about a running process: resident memory, open file
//! descriptors and CPU time. Linux only; elsewhere every reading is `None`
//! or zero.

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss_kib: u64,
    /// The most it has been resident (`VmHWM`).
    pub peak_kib: u64,
}

/// The resident memory of `pid`, or `None` if `/proc` cannot tell.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// How many file descriptors `pid` has open, or `None` if `/proc` cannot
/// tell (the process is gone, or belongs to another user).
pub fn open_fds(pid: u32) -> Option<usize> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.filter(|e| e.is_ok()).count())
}

/// User plus system CPU time of a process so far, in clock ticks (1/100 s).
/// `pid` is a process id or `self`. Zero when `/proc` cannot tell.
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_not_a_missing_one() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let mine = memory(std::process::id()).unwrap();
        assert!(mine.rss_kib > 0 && mine.peak_kib >= mine.rss_kib);
        assert!(open_fds(std::process::id()).unwrap() > 0);
        // Beyond pid_max (at most 2^22): no such process.
        assert_eq!(memory(u32::MAX), None);
        assert_eq!(open_fds(u32::MAX), None);
        assert_eq!(cpu_ticks(&u32::MAX.to_string()), 0);
    }
}
