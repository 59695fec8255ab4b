//! XenStore (xen/include/public/io/xs_wire.h, docs/misc/xenstore.txt):
//! the hierarchical key-value store through which domains find each other.
//!
//! The application's calls (one global client, brought up at boot):
//! [`read`], [`read_string`], [`read_u64`], [`write()`], [`rm`], [`list`],
//! [`publish`], [`transaction`], [`Watch`]; `control/shutdown` arrives as
//! an [`Event`] from [`next_event`].
//!
//! Files, bottom up:
//!
//! * `wire.rs` — the codec: message types and header, request encoding,
//!   the streaming [`Decoder`], reply parsers, [`Error`].
//! * `ring.rs` — [`XsRing`], the shared interface page's two byte rings.
//! * `client.rs` — [`XenStore`], a synchronous client (transactions,
//!   watches) over an [`XsTransport`].
//! * `guest.rs` — the guest singleton: the event-channel transport, the
//!   global client, the application calls, `control/shutdown` parsing.
//!
//! The first three are pure logic, tested on the host (`tests.rs`).

mod client;
mod guest;
mod ring;
mod wire;

pub use client::{
    XenStore, XsTransport, MAX_QUEUED_WATCH_EVENTS, MAX_TRANSACTION_RETRIES, PUMP_BUDGET,
};
pub use guest::{
    init, list, next_event, parse_shutdown, port, publish, read, read_string, read_u64, rm,
    set_default_timeout, set_timeout, take_shutdown_request, transaction, wait_event,
    watch_shutdown, with, write, BadValue, Client, Event, EvtchnTransport, ShutdownError,
    ShutdownRequest, StoreError, Watch, DEFAULT_TIMEOUT_NS, SHUTDOWN_TOKEN,
};
pub use ring::{XsRing, XENSTORE_RING_SIZE};
pub use wire::{
    decode_message, encode_message, parse_ok, parse_string, parse_strings, parse_watch_event,
    Broken, Decoder, Error, Header, Message, MsgType, Perm, PermKind, Request, TxId, WatchEvent,
    XsError, ABS_PATH_MAX, HEADER_SIZE, REL_PATH_MAX, XENSTORE_PAYLOAD_MAX,
};

#[cfg(test)]
mod tests;
