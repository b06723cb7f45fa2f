//! The beats log: terms as the commands wrote them.

use super::*;

/// One term, from the heartbeat log.
#[derive(Clone, Debug)]
pub(super) struct Term {
    pub(super) id: String,
    /// The term's key: its writer in the log (the command's pid for
    /// `tenure run`, `PID.N` for a library candidate's N-th term) and the
    /// time of its "start" line.
    pub(super) key: String,
    /// The process that did the term's work.
    pub(super) pid: u32,
    pub(super) token: u64,
    pub(super) first: i128,
    pub(super) last: i128,
}

/// Reads the heartbeat log as it grows.
pub(super) struct Log {
    pub(super) reader: BufReader<std::fs::File>,
    pub(super) terms: HashMap<String, Term>,
    /// Each writer's (pid's) current term.
    pub(super) current: HashMap<String, String>,
    pub(super) partial: String,
}

impl Log {
    pub(super) fn open(path: &Path) -> std::io::Result<Log> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(0))?;
        Ok(Log {
            reader,
            terms: HashMap::new(),
            current: HashMap::new(),
            partial: String::new(),
        })
    }

    pub(super) fn refresh(&mut self) {
        let mut line = String::new();
        while self.reader.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                self.partial.push_str(&line);
                line.clear();
                continue;
            }
            let full = std::mem::take(&mut self.partial) + &line;
            line.clear();
            let f: Vec<&str> = full.split_whitespace().collect();
            let (Some(kind), Some(id), Some(key), Some(ns)) = (
                f.first(),
                f.get(1),
                f.get(2),
                f.get(3).and_then(|n| n.parse::<i128>().ok()),
            ) else {
                continue;
            };
            let Some(pid) = key.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            // A writer's "start" line begins a term: pids are reused (a
            // long run wraps pid_max), so a term is its writer and start.
            if *kind == "start" {
                self.current.insert(key.to_string(), format!("{key}@{ns}"));
            }
            let term_key = self
                .current
                .entry(key.to_string())
                .or_insert_with(|| format!("{key}@{ns}"))
                .clone();
            let term = self.terms.entry(term_key.clone()).or_insert(Term {
                // A Go elector's identity is its candidate's and a
                // per-process suffix (`g2_<ns>`), as Go controllers
                // name themselves `hostname_uuid`.
                id: id.split('_').next().unwrap_or(id).to_string(),
                key: term_key,
                pid,
                token: 0,
                first: ns,
                last: ns,
            });
            if *kind == "start" {
                term.token = f.get(4).and_then(|t| t.parse().ok()).unwrap_or(0);
                term.first = term.first.min(ns);
            }
            term.last = term.last.max(ns);
        }
    }

    pub(super) fn sorted(&self) -> Vec<Term> {
        let mut terms: Vec<Term> = self.terms.values().cloned().collect();
        terms.sort_by_key(|t| t.first);
        terms
    }
}

#[cfg(test)]
mod tests {
    use super::Log;

    #[test]
    pub(super) fn a_reused_pid_starts_a_new_term() {
        // Seen in a long run: a pid that wrapped around merged a new term
        // into an old one, which then looked old, and no leader was found.
        let dir = std::env::temp_dir().join(format!("tenure-chaos-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("beats.log");
        std::fs::write(
            &path,
            "start c0 77 100 5\nbeat c0 77 110\nstart c1 77 900 9\nbeat c1 77 950\n",
        )
        .unwrap();
        let mut log = Log::open(&path).unwrap();
        log.refresh();
        let terms = log.sorted();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(terms.len(), 2, "{terms:?}");
        assert_eq!((terms[0].id.as_str(), terms[0].token), ("c0", 5));
        assert_eq!((terms[0].first, terms[0].last), (100, 110));
        assert_eq!((terms[1].id.as_str(), terms[1].token), ("c1", 9));
        assert_eq!((terms[1].first, terms[1].last), (900, 950));
    }
}
