//! The process collector: Prometheus's standard `process_*` series (CPU,
//! memory, file descriptors, threads, start time), read from `/proc` at
//! each scrape, as the official client libraries do. Elsewhere than Linux
//! it exports nothing.

use std::path::Path;

use metrics::gauge;

/// `/proc` reports CPU time in these ticks per second (`USER_HZ`, fixed by
/// the kernel's ABI at 100 whatever the kernel's internal tick rate).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessFigures {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Threads.
    pub threads: u64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessFigures {
    /// Reads them from `proc` (`/proc` on Linux); `None` if it is not there
    /// or unreadable.
    pub fn read(proc: &Path) -> Option<Self> {
        let stat = std::fs::read_to_string(proc.join("self/stat")).ok()?;
        // The command name (field 2) is in parentheses and may hold spaces:
        // the fields after its closing parenthesis start at field 3.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let status = std::fs::read_to_string(proc.join("self/status")).ok()?;
        let status_kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        };
        let boot_time = std::fs::read_to_string(proc.join("stat"))
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse::<u64>().ok()));
        let max_fds = std::fs::read_to_string(proc.join("self/limits")).ok().and_then(|l| {
            l.lines()
                .find_map(|line| line.strip_prefix("Max open files"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        });
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / USER_HZ,
            resident_bytes: status_kib("VmRSS:").unwrap_or(0) * 1024,
            virtual_bytes: field(23).unwrap_or(0),
            open_fds: std::fs::read_dir(proc.join("self/fd")).map_or(0, |d| d.count() as u64),
            max_fds,
            threads: field(20).unwrap_or(0),
            start_time_seconds: boot_time.zip(field(22)).map(|(boot, ticks)| boot as f64 + ticks as f64 / USER_HZ),
        })
    }
}

/// Sets the `process_*` series from `/proc`.
pub fn export() {
    let Some(p) = ProcessFigures::read(Path::new("/proc")) else { return };
    // A counter in meaning, but the recorder's counters are integers and
    // CPU time is not: set as a gauge, `rate()` reads it all the same.
    gauge!("process_cpu_seconds_total").set(p.cpu_seconds);
    gauge!("process_resident_memory_bytes").set(p.resident_bytes as f64);
    gauge!("process_virtual_memory_bytes").set(p.virtual_bytes as f64);
    gauge!("process_open_fds").set(p.open_fds as f64);
    if let Some(max) = p.max_fds {
        gauge!("process_max_fds").set(max as f64);
    }
    gauge!("process_threads").set(p.threads as f64);
    if let Some(start) = p.start_time_seconds {
        gauge!("process_start_time_seconds").set(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let Some(p) = ProcessFigures::read(Path::new("/proc")) else { return };
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        assert!(p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds >= 3 && p.threads >= 1, "{p:?}");
        assert!(p.max_fds.is_some_and(|m| m >= p.open_fds), "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds.is_some_and(|s| s <= now + 1.0 && s > now - 86_400.0 * 365.0), "{p:?}");
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("self");
        std::fs::create_dir_all(own.join("fd")).unwrap();
        std::fs::write(own.join("fd/0"), "").unwrap();
        // Fields 3.. of a process named "a b) c": state R, ppid 1, …
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[14 - 3] = "250".into(); // utime, ticks
        fields[15 - 3] = "50".into(); // stime
        fields[20 - 3] = "7".into(); // threads
        fields[22 - 3] = "1000".into(); // start, ticks after boot
        fields[23 - 3] = "123456789".into(); // vsize
        std::fs::write(own.join("stat"), format!("42 (a b) c) {}\n", fields.join(" "))).unwrap();
        std::fs::write(own.join("status"), "Name:\ta b) c\nVmRSS:\t  2048 kB\n").unwrap();
        std::fs::write(own.join("limits"), "Limit  Soft Limit Hard Limit Units\nMax open files            1024                 4096                 files\n").unwrap();
        std::fs::write(dir.path().join("stat"), "cpu 1 2 3\nbtime 1700000000\n").unwrap();
        let p = ProcessFigures::read(dir.path()).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 2048 * 1024);
        assert_eq!(p.open_fds, 1);
        assert_eq!(p.max_fds, Some(1024));
        assert_eq!(p.start_time_seconds, Some(1_700_000_010.0));
    }
}
