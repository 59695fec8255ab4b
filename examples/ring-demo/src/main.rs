//! ring-demo: the classic split-driver demo, done properly. The guest
//! grants a page, lays an io/ring.h request/response ring of
//! `{id, status, operation}` entries on it, offers an event channel, and
//! publishes both under `data/demo`; Dom0's backend (`xf-ring-back`,
//! peers/) maps the ring and answers every request with `status + 1`.
//! Every response is copied out once and checked (id outstanding,
//! operation echoed, status answered); a misbehaving backend ends the run
//! with a named error.
//!
//! Words (`extra=`): `requests=<n>` (default 10000), `backend=<domid>`
//! (default 0), `wait=<secs>` for the backend to show up (default 60).
#![no_std]
#![no_main]

use xenfront::chan_env::OfferedPort;
use xenfront::drivers::demo::DemoFront;
use xenfront::time::{self, NS_PER_MS, NS_PER_SEC};
use xenfront::xenstore::{self, Perm};
use xenfront::{event, grant_table, mm, println, Error};

extern crate alloc;

fn demo() -> Result<(), Error> {
    let requests = xenfront::arg_num::<u64>("requests", 10_000)?;
    let backend = u16::try_from(xenfront::arg_num::<u64>("backend", 0)?)
        .map_err(|_| Error::msg("backend=: not a domain id"))?;
    let wait_ns = xenfront::arg_num::<u64>("wait", 60)?.max(1) * NS_PER_SEC;
    let me = u16::try_from(xenstore::read_u64("domid")?)
        .map_err(|_| Error::msg("domid: not a domain id"))?;

    let page = mm::alloc_shared_page()?;
    let port = event::alloc_unbound(backend)?;
    let mut front = DemoFront::new(page.mem(), port)?;
    let grant = grant_table::grant_page(backend, &page, false)?;
    let gref = grant.gref().0;
    let (g, p) = (alloc::format!("{gref}"), alloc::format!("{port}"));
    // Only we may write the keys; the backend may read them.
    let perms = Perm::owner_and_reader(me, backend);
    xenstore::publish(
        &[
            ("data/demo/ring-ref", g.as_bytes()),
            ("data/demo/event-channel", p.as_bytes()),
        ],
        &perms,
    )?;
    println!("ring-demo: ring-ref {gref} event-channel {port} published under data/demo for domain {backend}");

    let t0 = time::now_ns();
    let r = front.run(&OfferedPort::default(), 0, requests, wait_ns);
    let ns = (time::now_ns() - t0).max(1);
    let st = front.stats();
    // The ring's last use: from here on only the grant holds the page.
    drop(page);

    // Tear down whatever happened: keys, port, grant (reclaimed later if
    // the backend still maps the page).
    let _ = xenstore::rm("data/demo");
    let _ = event::close(port);
    let revoked = grant_table::revoke(grant)?;
    let deadline = time::now_ns() + 5 * NS_PER_SEC;
    while grant_table::counters()?.deferred > 0 && time::now_ns() < deadline {
        grant_table::poll_deferred();
        time::sleep(10 * NS_PER_MS);
    }
    let c = grant_table::counters()?;
    match r {
        Ok(_) => {
            println!(
                "ring-demo: {}/{requests} responses ok in {} ms ({} req/s), {} notifications",
                st.completed,
                ns / 1_000_000,
                st.completed.saturating_mul(NS_PER_SEC) / ns,
                st.notifies
            );
            println!(
                "ring-demo: ring-ref {gref} revoked ({}), grants in_use {} deferred {}",
                if matches!(revoked, grant_table::Revoked::Done(_)) {
                    "at once"
                } else {
                    "after the backend unmapped"
                },
                c.in_use,
                c.deferred
            );
            Ok(())
        }
        Err(e) => Err(Error::from(e).context(alloc::format!(
            "ring-demo: backend failed after {} of {requests} responses",
            st.completed
        ))),
    }
}

xenfront::main!(demo);
