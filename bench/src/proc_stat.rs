//! CPU time of a process from `/proc`, to tell how busy the server was during a step.

/// Kernel clock ticks per second in `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds `pid` has used so far, `None` if it cannot be read.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_seconds(&stat)
}

/// User + system CPU seconds used so far by `pid` and its children (nginx's master and its
/// workers), `None` if `pid`'s own cannot be read.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let mut total = cpu_seconds(pid)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        if parse_ppid(&stat) == Some(pid) {
            total += parse_cpu_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// The parent's pid (field 4) of a `/proc/<pid>/stat` line.
fn parse_ppid(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
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
        assert_eq!(parse_ppid(line), Some(1));
    }

    #[test]
    fn a_process_tree_counts_its_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        // Until the child's busy loop has used a tick of CPU.
        let mut child_cpu = 0.0;
        for _ in 0..200 {
            child_cpu = cpu_seconds(child.id()).unwrap_or(0.0);
            if child_cpu > 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let own = cpu_seconds(std::process::id()).unwrap();
        let tree = tree_cpu_seconds(std::process::id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(child_cpu > 0.0, "the child never ran");
        assert!(
            tree >= own + child_cpu,
            "the child's {child_cpu} s are counted: {tree} vs {own}"
        );
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_seconds(std::process::id()).is_some());
    }
}
