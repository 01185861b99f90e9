//! What the kernel says of a worker process: CPU time used and resident
//! memory (`/proc/PID/stat`, `/proc/PID/statm`), for the console's live
//! view and Prometheus' `inetsrv_worker_cpu_seconds_total` and
//! `inetsrv_worker_resident_memory_bytes` (the names Prometheus gives
//! any process's).

/// A process's CPU seconds (user and system) and resident bytes, if it
/// is there to read.
pub fn usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some((cpu_seconds(&stat)?, resident_bytes(&statm)?))
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as f64
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .unwrap_or(4096) as u64
}

/// utime + stime, fields 14 and 15 of `/proc/PID/stat`, counted after
/// the command name's closing parenthesis (the name may hold spaces).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // The rest starts at field 3 (state): utime is field 14.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_second())
}

/// The second field of `/proc/PID/statm`: resident pages.
fn resident_bytes(statm: &str) -> Option<u64> {
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_usage_and_the_fields_are_read_after_the_name() {
        let (cpu, memory) = usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0);
        assert!(memory > 0);
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(cpu_seconds(stat), Some(300.0 / ticks_per_second()));
        assert_eq!(resident_bytes("100 25 3 1 0 20 0"), Some(25 * page_size()));
        assert_eq!(usage(u32::MAX), None);
    }
}
