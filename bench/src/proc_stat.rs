//! CPU time of a process from `/proc`, to tell how busy the server was during a step.

/// Kernel clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds `pid` has used so far, `None` if it cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_a_command_name_with_spaces() {
        let line =
            "1234 (tokio (worker) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu_seconds(line), Some(3.0));
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
