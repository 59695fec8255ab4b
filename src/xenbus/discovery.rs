//! Finding devices: `device/<class>` lists this domain's frontends (one
//! directory per device id: `device/vbd/51712`, `device/vif/0`), each with
//! `backend` (the backend directory, absolute) and `backend-id` (the
//! backend's domid), written by the toolstack (xenbus.h; xen
//! `docs/misc/xenstore-paths.pandoc`; Linux `xenbus_probe_frontend.c`
//! `read_backend_details`).
//!
//! Every value is checked before it is used to build another path: a
//! `backend` that is relative, contains `..` or empty components, or does
//! not have the `/local/domain/<n>/backend/<type>/<domid>/<id>` shape is
//! an error naming the key and the value, never a path we write under.

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{parse_canonical_decimal, XenbusError};
use crate::xenstore::{self, TxId, XenStore, XsError, XsTransport};

/// `DOMID_FIRST_RESERVED` (xen.h): ids from here on (`DOMID_SELF`,
/// `DOMID_IO`, …) are not domains.
pub const DOMID_FIRST_RESERVED: u16 = 0x7FF0;

/// Longest `backend` value accepted. Real ones are about 40 bytes
/// (`/local/domain/0/backend/vbd/12/51712`); 255 leaves room for every key
/// name below it within XenStore's 3072-byte absolute path limit.
pub const MAX_BACKEND_PATH: usize = 255;

/// The ids of a `device/<class>` listing (`dir` is the directory, for
/// messages), ascending. Every entry must be a canonical decimal `u32`
/// (the vdev number for vbd: xvda = 51712; an index for vif).
pub fn parse_device_ids(dir: &str, names: &[String]) -> Result<Vec<u32>, XenbusError> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id = parse_canonical_decimal(name.as_bytes())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| XenbusError::BadDeviceId {
                dir: dir.into(),
                name: name.clone(),
            })?;
        ids.push(id);
    }
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(XenbusError::BadDeviceId {
            dir: dir.into(),
            name: w[0].to_string(),
        });
    }
    Ok(ids)
}

/// Parses a domid value: canonical decimal below [`DOMID_FIRST_RESERVED`].
fn parse_domid(v: &[u8]) -> Option<u16> {
    parse_canonical_decimal(v)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&d| d < DOMID_FIRST_RESERVED)
}

/// The `backend-id` value of key `path`: a decimal domid below
/// `DOMID_FIRST_RESERVED` (0x7FF0).
pub fn parse_backend_id(path: &str, value: &[u8]) -> Result<u16, XenbusError> {
    parse_domid(value).ok_or_else(|| XenbusError::BadBackendId {
        path: path.into(),
        value: value.into(),
    })
}

/// A validated `backend` value:
/// `/local/domain/<domid>/backend/<kind>/<frontend>/<devid>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPath {
    /// The whole path (absolute, no trailing `/`).
    pub path: String,
    /// The backend's domain (`<n>` after `/local/domain/`).
    pub domid: u16,
    /// The backend type: `vbd`, `qdisk`, `vbd3`, `vif`, …
    pub kind: String,
    /// The frontend's domain named in the path.
    pub frontend: u16,
    /// The device id named in the path.
    pub devid: u32,
}

impl BackendPath {
    /// Parses the value of key `path` (for messages).
    pub fn parse(path: &str, value: &[u8]) -> Result<BackendPath, XenbusError> {
        let bad = |why| XenbusError::BadBackendPath {
            path: path.into(),
            value: value.into(),
            why,
        };
        if value.is_empty() {
            return Err(bad("empty"));
        }
        if value.len() > MAX_BACKEND_PATH {
            return Err(bad("too long"));
        }
        let s = core::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?;
        let Some(rest) = s.strip_prefix('/') else {
            return Err(bad("not absolute"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(bad("empty, `.` or `..` component"));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if !parts.iter().all(|p| p.chars().all(name_char)) {
            return Err(bad("character outside [A-Za-z0-9_-]"));
        }
        let [local, domain, n, backend, kind, fe, id] = parts[..] else {
            return Err(bad("not /local/domain/<n>/backend/<type>/<domid>/<id>"));
        };
        if (local, domain, backend) != ("local", "domain", "backend") {
            return Err(bad("not /local/domain/<n>/backend/<type>/<domid>/<id>"));
        }
        let domid =
            parse_domid(n.as_bytes()).ok_or_else(|| bad("backend domain is not a domid"))?;
        let frontend =
            parse_domid(fe.as_bytes()).ok_or_else(|| bad("frontend domain is not a domid"))?;
        let devid = parse_canonical_decimal(id.as_bytes())
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad("device id is not a decimal u32"))?;
        Ok(BackendPath {
            path: s.into(),
            domid,
            kind: kind.into(),
            frontend,
            devid,
        })
    }

    /// `<backend>/<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.path)
    }
}

/// One frontend device, its keys read and cross-checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendInfo {
    /// The device class: `vbd`, `vif`, …
    pub class: String,
    /// The device id (directory name).
    pub id: u32,
    /// The frontend directory, relative to this domain: `device/<class>/<id>`.
    pub dir: String,
    /// The backend directory.
    pub backend: BackendPath,
    /// `backend-id`.
    pub backend_id: u16,
}

impl FrontendInfo {
    /// Validates the `backend` and `backend-id` values of device
    /// `class`/`id`: each well-formed, the backend path's domain equal to
    /// `backend-id`, its device id equal to `id`, and its frontend domain
    /// equal to `own_domid` when known (the toolstack lays them out so;
    /// libxl `libxl__device_generic_add`).
    pub fn parse(
        class: &str,
        id: u32,
        backend: &[u8],
        backend_id: &[u8],
        own_domid: Option<u16>,
    ) -> Result<FrontendInfo, XenbusError> {
        let dir = format!("device/{class}/{id}");
        let be = BackendPath::parse(&format!("{dir}/backend"), backend)?;
        let backend_id = parse_backend_id(&format!("{dir}/backend-id"), backend_id)?;
        let mismatch = |why| XenbusError::BackendMismatch {
            backend: be.path.clone(),
            why,
        };
        if be.domid != backend_id {
            return Err(mismatch("its domain is not backend-id"));
        }
        if be.devid != id {
            return Err(mismatch("its device id is not the frontend's"));
        }
        if own_domid.is_some_and(|d| d != be.frontend) {
            return Err(mismatch("it names another frontend domain"));
        }
        Ok(FrontendInfo {
            class: class.into(),
            id,
            dir,
            backend: be,
            backend_id,
        })
    }

    /// `device/<class>/<id>/<key>` (relative to this domain).
    pub fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.dir)
    }

    /// Our `state` key.
    pub fn state_path(&self) -> String {
        self.key("state")
    }

    /// The backend's `state` key (the one to watch).
    pub fn backend_state_path(&self) -> String {
        self.backend.key("state")
    }

    /// The ids under `device/<class>` (none if the directory does not
    /// exist), validated.
    pub fn list<T: XsTransport>(
        xs: &mut XenStore<'_, T>,
        class: &str,
    ) -> Result<Vec<u32>, XenbusError> {
        let dir = format!("device/{class}");
        match xs.directory(TxId::NONE, &dir) {
            Ok(names) => parse_device_ids(&dir, &names),
            Err(xenstore::Error::Xs(XsError::ENOENT)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and validates device `class`/`id`'s `backend` and
    /// `backend-id`.
    pub fn read<T: XsTransport>(
        xs: &mut XenStore<'_, T>,
        class: &str,
        id: u32,
        own_domid: Option<u16>,
    ) -> Result<FrontendInfo, XenbusError> {
        let dir = format!("device/{class}/{id}");
        let backend = xs.read(TxId::NONE, &format!("{dir}/backend"))?;
        let backend_id = xs.read(TxId::NONE, &format!("{dir}/backend-id"))?;
        FrontendInfo::parse(class, id, &backend, &backend_id, own_domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn device_ids() {
        assert_eq!(
            parse_device_ids("device/vbd", &names(&["51728", "51712", "0"])),
            Ok(vec![0, 51712, 51728])
        );
        assert_eq!(parse_device_ids("device/vif", &[]), Ok(vec![]));
        // xvd disks ≥ 16 use 1<<28 | d<<8 | p: still a u32.
        assert_eq!(
            parse_device_ids("device/vbd", &names(&["268439552"])),
            Ok(vec![(1 << 28) | (16 << 8)])
        );
        for bad in ["", "x", "01", "-1", "1 ", "4294967296", "..", "5/6"] {
            assert_eq!(
                parse_device_ids("device/vbd", &names(&["51712", bad])),
                Err(XenbusError::BadDeviceId {
                    dir: "device/vbd".into(),
                    name: bad.into()
                }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_device_ids("device/vbd", &names(&["7", "7"])),
            Err(XenbusError::BadDeviceId { .. })
        ));
    }

    #[test]
    fn backend_ids() {
        assert_eq!(parse_backend_id("k", b"0"), Ok(0));
        assert_eq!(parse_backend_id("k", b"32751"), Ok(0x7FEF));
        for bad in [
            &b""[..],
            b"32752",
            b"32753",
            b"65535",
            b"65536",
            b"00",
            b"-0",
            b"0\0",
            b"1 ",
        ] {
            assert_eq!(
                parse_backend_id("device/vbd/51712/backend-id", bad),
                Err(XenbusError::BadBackendId {
                    path: "device/vbd/51712/backend-id".into(),
                    value: bad.to_vec()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn backend_paths() {
        let p = BackendPath::parse("k", b"/local/domain/0/backend/vbd/5/51712").unwrap();
        assert_eq!(
            p,
            BackendPath {
                path: "/local/domain/0/backend/vbd/5/51712".into(),
                domid: 0,
                kind: "vbd".into(),
                frontend: 5,
                devid: 51712,
            }
        );
        assert_eq!(p.key("state"), "/local/domain/0/backend/vbd/5/51712/state");
        let q = BackendPath::parse("k", b"/local/domain/3/backend/qdisk/12/768").unwrap();
        assert_eq!((q.domid, q.kind.as_str(), q.devid), (3, "qdisk", 768));

        let long = format!("/local/domain/0/backend/{}/5/1", "v".repeat(300));
        let cases: Vec<(&[u8], &str)> = vec![
            (b"", "empty"),
            (long.as_bytes(), "too long"),
            (b"/local/domain/0/backend/v\xffd/5/1", "not UTF-8"),
            (b"local/domain/0/backend/vbd/5/1", "not absolute"),
            (
                b"/local/domain/0/backend/vbd/5/51712/",
                "empty, `.` or `..` component",
            ),
            (
                b"/local//domain/0/backend/vbd/5/1",
                "empty, `.` or `..` component",
            ),
            (
                b"/local/domain/0/backend/vbd/5/../1",
                "empty, `.` or `..` component",
            ),
            (
                b"/local/domain/0/backend/./5/1",
                "empty, `.` or `..` component",
            ),
            (
                b"/local/domain/0/backend/vbd/5/1\0",
                "character outside [A-Za-z0-9_-]",
            ),
            (
                b"/local/domain/0/backend/vbd/5/1 ",
                "character outside [A-Za-z0-9_-]",
            ),
            (
                b"/local/domain/0/backend/vbd/5",
                "not /local/domain/<n>/backend/<type>/<domid>/<id>",
            ),
            (
                b"/local/domain/0/backend/vbd/5/1/2",
                "not /local/domain/<n>/backend/<type>/<domid>/<id>",
            ),
            (
                b"/local/domain/0/frontend/vbd/5/1",
                "not /local/domain/<n>/backend/<type>/<domid>/<id>",
            ),
            (
                b"/vm/domain/0/backend/vbd/5/1",
                "not /local/domain/<n>/backend/<type>/<domid>/<id>",
            ),
            (
                b"/local/domain/x/backend/vbd/5/1",
                "backend domain is not a domid",
            ),
            (
                b"/local/domain/32752/backend/vbd/5/1",
                "backend domain is not a domid",
            ),
            (
                b"/local/domain/0/backend/vbd/05/1",
                "frontend domain is not a domid",
            ),
            (
                b"/local/domain/0/backend/vbd/5/4294967296",
                "device id is not a decimal u32",
            ),
        ];
        for (v, why) in cases {
            assert_eq!(
                BackendPath::parse("device/vbd/1/backend", v),
                Err(XenbusError::BadBackendPath {
                    path: "device/vbd/1/backend".into(),
                    value: v.to_vec(),
                    why
                }),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        let max = format!(
            "/local/domain/0/backend/{}/5/1",
            "v".repeat(MAX_BACKEND_PATH - 28)
        );
        assert_eq!(max.len(), MAX_BACKEND_PATH);
        assert!(BackendPath::parse("k", max.as_bytes()).is_ok());
    }

    #[test]
    fn frontend_info_cross_checks() {
        let be = b"/local/domain/0/backend/vbd/5/51712";
        let i = FrontendInfo::parse("vbd", 51712, be, b"0", Some(5)).unwrap();
        assert_eq!(i.dir, "device/vbd/51712");
        assert_eq!(i.state_path(), "device/vbd/51712/state");
        assert_eq!(
            i.backend_state_path(),
            "/local/domain/0/backend/vbd/5/51712/state"
        );
        assert_eq!(i.backend_id, 0);
        assert!(FrontendInfo::parse("vbd", 51712, be, b"0", None).is_ok());
        let e = |r: Result<FrontendInfo, XenbusError>| match r {
            Err(XenbusError::BackendMismatch { why, .. }) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            e(FrontendInfo::parse("vbd", 51712, be, b"1", Some(5))),
            "its domain is not backend-id"
        );
        assert_eq!(
            e(FrontendInfo::parse("vbd", 51728, be, b"0", Some(5))),
            "its device id is not the frontend's"
        );
        assert_eq!(
            e(FrontendInfo::parse("vbd", 51712, be, b"0", Some(6))),
            "it names another frontend domain"
        );
        // The keys' own errors name the frontend keys.
        assert_eq!(
            FrontendInfo::parse("vbd", 51712, b"../../x", b"0", None),
            Err(XenbusError::BadBackendPath {
                path: "device/vbd/51712/backend".into(),
                value: b"../../x".to_vec(),
                why: "not absolute"
            })
        );
        assert_eq!(
            FrontendInfo::parse("vbd", 51712, be, b"0x0", None),
            Err(XenbusError::BadBackendId {
                path: "device/vbd/51712/backend-id".into(),
                value: b"0x0".to_vec()
            })
        );
    }

    #[test]
    fn over_the_real_client() {
        use crate::xenbus::fake::{xenstore_with, FakeStore};
        let mut st = FakeStore::default();
        for id in ["51712", "51728"] {
            st.put(
                &format!("device/vbd/{id}/backend"),
                format!("/local/domain/0/backend/vbd/5/{id}").as_bytes(),
            );
            st.put(&format!("device/vbd/{id}/backend-id"), b"0");
        }
        st.put(
            "device/vif/0/backend",
            b"/local/domain/0/backend/vif/5/0/..",
        );
        st.put("device/vif/0/backend-id", b"0");
        xenstore_with(st, 0, |xs| {
            assert_eq!(FrontendInfo::list(xs, "vbd"), Ok(vec![51712, 51728]));
            assert_eq!(FrontendInfo::list(xs, "vif"), Ok(vec![0]));
            assert_eq!(FrontendInfo::list(xs, "vscsi"), Ok(vec![]));
            let i = FrontendInfo::read(xs, "vbd", 51728, Some(5)).unwrap();
            assert_eq!(i.backend.path, "/local/domain/0/backend/vbd/5/51728");
            assert!(matches!(
                FrontendInfo::read(xs, "vif", 0, Some(5)),
                Err(XenbusError::BadBackendPath { .. })
            ));
            assert_eq!(
                FrontendInfo::read(xs, "vbd", 1, None),
                Err(XenbusError::Store(xenstore::Error::Xs(XsError::ENOENT)))
            );
        });
    }
}
