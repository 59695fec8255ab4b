//! vchan byte streams (libxenvchan's shared-memory protocol) between this
//! guest and another domain, over the kernel's grant table, event channels
//! and XenStore. The protocol itself is [`crate::drivers::vchan`].
//!
//! ```ignore
//! let mut v = xenfront::vchan::listen(0, "data/vchan", 0, 0)?;
//! v.wait_connected(30 * xenfront::time::NS_PER_SEC)?;
//! let n = v.read(&mut buf, 10 * xenfront::time::NS_PER_SEC)?;
//! v.write_all(&buf[..n], 10 * xenfront::time::NS_PER_SEC)?;
//! v.close();
//! ```
//!
//! Every blocking call takes a timeout; a peer that disappears (its event
//! channel closes without saying goodbye) ends the stream with
//! [`VchanError::PeerGone`]; one that closes properly with
//! [`VchanError::Closed`].

extern crate alloc;

use alloc::format;
use alloc::string::String;

use crate::chan_env::XenChan;
use crate::drivers::vchan::VchanEnv;

pub use crate::drivers::vchan::{VchanError, VchanStats};

/// One vchan endpoint of this guest.
pub type Vchan = crate::drivers::vchan::Vchan<XenChan>;

/// `path` as an absolute XenStore path: relative paths are under this
/// domain's home (`/local/domain/<domid>/`).
fn absolute(path: &str) -> Result<String, VchanError> {
    if path.starts_with('/') {
        return Ok(String::from(path));
    }
    let me = XenChan.self_domid().map_err(VchanError::Env)?;
    Ok(format!("/local/domain/{me}/{path}"))
}

/// Offers a vchan to domain `client` under XenStore directory `path`
/// (relative to this domain's home, or absolute), with rings of at least
/// `left_min` bytes (client → server) and `right_min` bytes (0, 0 → the
/// 1 KiB / 2 KiB rings inside the control page). Returns at once; wait for
/// the client with [`Vchan::wait_connected`].
pub fn listen(
    client: u16,
    path: &str,
    left_min: usize,
    right_min: usize,
) -> Result<Vchan, VchanError> {
    let path = absolute(path)?;
    Vchan::server(XenChan, client, &path, left_min, right_min).map_err(|(_, e)| e)
}

/// Connects to the vchan that domain `server` offers under XenStore
/// directory `path` (relative to this domain's home, or absolute).
/// [`VchanError::NotReady`] while the server has not published its keys.
pub fn connect(server: u16, path: &str) -> Result<Vchan, VchanError> {
    Vchan::client(XenChan, server, path).map_err(|(_, e)| e)
}
