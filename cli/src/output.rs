//! Progress lines on stderr, with a timestamp.

use chrono::{SecondsFormat, Utc};

/// Prints `tenure [time] message` on stderr (stdout belongs to the command).
pub fn say(message: impl AsRef<str>) {
    eprintln!(
        "tenure [{}] {}",
        Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        message.as_ref()
    );
}
