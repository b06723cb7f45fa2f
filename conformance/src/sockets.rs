//! Counting this process's connections to a server (for tests and
//! benchmarks of connection reuse).

/// Established TCP connections from this process to `port` (any address),
/// read from `/proc` (Linux): the sockets among our own file descriptors
/// whose remote port is `port`. 0 where `/proc` cannot be read.
pub fn connections_to(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    for fd in fds.flatten() {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut count = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else {
                continue;
            };
            let remote_port = remote
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) && *state == "01" && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    count
}
