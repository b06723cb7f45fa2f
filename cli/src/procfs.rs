//! What /proc says about processes: parents, children, states.
//!
//! The one copy, owned by the CLI (`tenure run`'s supervisor uses it): the
//! CLI's tests and the chaos harness (unpublished) include this file with
//! `#[path]`.

/// The fields of `/proc/PID/stat` after the command name (which may hold
/// spaces and parentheses): state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// The parent of `pid`, while it runs.
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The state letter of `pid` (`R`, `S`, `T` stopped, `Z` zombie...).
pub(crate) fn state_of(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Every pid now running.
pub(crate) fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// The pids whose parent is `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}
