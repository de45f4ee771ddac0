//! The event log (R72): one JSON object per line, each with a UTC `time` and an `event` name,
//! meant to be shipped to a central log. Events never carry secrets (no keys, no MAC keys,
//! no key authorizations).

use std::io::Write;
use std::sync::{Arc, Mutex};

use sceau_wire::Problem;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    AccountCreated {
        server: String,
        account: String,
    },
    AccountKeyChanged {
        server: String,
        account: String,
        key_type: String,
    },
    AccountDeactivated {
        server: String,
        account: String,
    },
    OrderCreated {
        order: String,
        identifiers: Vec<String>,
    },
    ChallengeAnswered {
        identifier: String,
        method: String,
        challenge: String,
    },
    ChallengeValid {
        identifier: String,
        method: String,
    },
    Issued {
        name: String,
        serial: String,
        not_after: String,
        identifiers: Vec<String>,
        key: String,
    },
    Renewed {
        name: String,
        serial: String,
        not_after: String,
        identifiers: Vec<String>,
        key: String,
    },
    RenewalSkipped {
        name: String,
        reason: String,
    },
    /// A STAR series (RFC 8739) was ordered.
    StarOrdered {
        name: String,
        order: String,
        lifetime: u64,
        end_date: String,
    },
    /// The next certificate of a STAR series was fetched and installed.
    StarInstalled {
        name: String,
        serial: String,
        not_before: String,
        not_after: String,
    },
    /// A STAR series is over: `canceled` or `expired`.
    StarEnded {
        name: String,
        outcome: String,
        detail: String,
    },
    Revoked {
        name: Option<String>,
        serial: String,
        reason: Option<u8>,
    },
    DeployHook {
        name: String,
        command: String,
        success: bool,
    },
    Failure {
        name: Option<String>,
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        problem: Option<Problem>,
    },
}

pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink that drops events.
pub fn discard() -> EventSink {
    Arc::new(|_| {})
}

/// The JSON line for `event`, with its timestamp.
pub fn to_json_line(event: &Event) -> String {
    let mut v = serde_json::to_value(event).expect("events serialise");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("time".into(), serde_json::Value::String(now));
    }
    v.to_string()
}

/// A sink writing JSON lines to `out` (a file opened for append, or stderr).
pub fn json_lines(out: Box<dyn Write + Send>) -> EventSink {
    let out = Mutex::new(out);
    Arc::new(move |event| {
        let line = to_json_line(event);
        let mut o = out.lock().expect("event log");
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    })
}

/// Calls every sink.
pub fn fan_out(sinks: Vec<EventSink>) -> EventSink {
    Arc::new(move |e| sinks.iter().for_each(|s| s(e)))
}
