//! Architecture code: how Xen enters this kernel and how it takes traps and
//! event upcalls, per guest type. The layers above see only a
//! [`Platform`](crate::platform::Platform) and the `mm` API.

pub mod x86_64;
