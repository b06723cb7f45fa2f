//! `--log-format`: tenure's stderr as text, or as one JSON object per line.
//!
//! A JSON line has these fields, and they are stable:
//! - `timestamp`: RFC 3339, UTC, milliseconds;
//! - `level`: `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`;
//! - `target`: `tenure` for the command's own lines, else the Rust module
//!   that logged;
//! - `message`: what happened;
//! - inside an election: `lock` (its name) and `identity`;
//! - the event's own fields, by name (such as `error`, `leader`,
//!   `holder`), and `dropped` on the line that counts lost lines.
//!
//! Field values are strings, numbers or booleans.

use std::fmt;
use std::sync::OnceLock;

use chrono::{SecondsFormat, Utc};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::output;

/// How tenure writes its stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `tenure [time] message` and tracing's text lines.
    #[default]
    Text,
    /// One JSON object per line (fields in `tenure run --help`'s section
    /// of the README).
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format chosen at start (text until then).
pub(crate) fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Installs the tracing subscriber for `filter`, writing `format`.
pub(crate) fn init(filter: &str, format: LogFormat) {
    let _ = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Never blocks: a stalled stderr loses lines, not the election.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(output::LossyLine::default);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.fmt_fields(JsonFields).event_format(JsonLine).init(),
    }
}

/// One line of tenure's own (`target` "tenure") in JSON, with `fields`.
pub(crate) fn json_line(level: &str, message: &str, fields: &[(&str, Value)]) -> String {
    let mut map = Map::new();
    map.insert("timestamp".into(), now().into());
    map.insert("level".into(), level.into());
    map.insert("target".into(), "tenure".into());
    map.insert("message".into(), message.into());
    for (k, v) in fields {
        map.insert((*k).into(), v.clone());
    }
    format!("{}\n", Value::Object(map))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Collects fields as JSON values.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// A span's fields, kept as a JSON object's text.
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut collected = Fields::default();
        fields.record(&mut collected);
        write!(writer, "{}", Value::Object(collected.0))
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut collected = Fields(parse(&current.fields));
        fields.record(&mut collected);
        current.fields = Value::Object(collected.0).to_string();
        Ok(())
    }
}

fn parse(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// An event as one JSON object: its spans' fields, then its own.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert("timestamp".into(), now().into());
        map.insert("level".into(), meta.level().as_str().into());
        map.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                    map.extend(parse(&fields.fields));
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        map.extend(own.0);
        writeln!(writer, "{}", Value::Object(map))
    }
}
