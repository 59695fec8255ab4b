//! Xen error numbers (xen/include/public/errno.h; same values as Linux).
//!
//! Hypercalls return `-errno` in rax; [`Errno::from_ret`] turns that into a
//! typed error. Pure code, tested on the host.

use core::fmt;

/// A Xen errno. Values Xen defines but this enum does not name come back as
/// [`Errno::Other`] with the positive number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// 1: Operation not permitted.
    EPERM,
    /// 2: No such file or directory.
    ENOENT,
    /// 3: No such process.
    ESRCH,
    /// 4: Interrupted system call.
    EINTR,
    /// 5: I/O error.
    EIO,
    /// 6: No such device or address.
    ENXIO,
    /// 7: Arg list too long.
    E2BIG,
    /// 9: Bad file number.
    EBADF,
    /// 11: Try again.
    EAGAIN,
    /// 12: Out of memory.
    ENOMEM,
    /// 13: Permission denied.
    EACCES,
    /// 14: Bad address.
    EFAULT,
    /// 16: Device or resource busy.
    EBUSY,
    /// 17: File exists.
    EEXIST,
    /// 18: Cross-device link.
    EXDEV,
    /// 19: No such device.
    ENODEV,
    /// 21: Is a directory.
    EISDIR,
    /// 22: Invalid argument.
    EINVAL,
    /// 28: No space left on device.
    ENOSPC,
    /// 30: Read-only file system.
    EROFS,
    /// 34: Math result not representable.
    ERANGE,
    /// 35: Resource deadlock would occur.
    EDEADLK,
    /// 36: File name too long.
    ENAMETOOLONG,
    /// 38: Function not implemented.
    ENOSYS,
    /// 39: Directory not empty.
    ENOTEMPTY,
    /// 61: No data available.
    ENODATA,
    /// 62: Timer expired.
    ETIME,
    /// 75: Value too large for defined data type.
    EOVERFLOW,
    /// 85: Interrupted system call should be restarted.
    ERESTART,
    /// 95: Operation not supported on transport endpoint.
    EOPNOTSUPP,
    /// 106: Transport endpoint is already connected.
    EISCONN,
    /// 107: Transport endpoint is not connected.
    ENOTCONN,
    /// 110: Connection timed out.
    ETIMEDOUT,
    /// Any other error, as its positive number.
    Other(i64),
}

const TABLE: &[(i64, Errno)] = &[
    (1, Errno::EPERM),
    (2, Errno::ENOENT),
    (3, Errno::ESRCH),
    (4, Errno::EINTR),
    (5, Errno::EIO),
    (6, Errno::ENXIO),
    (7, Errno::E2BIG),
    (9, Errno::EBADF),
    (11, Errno::EAGAIN),
    (12, Errno::ENOMEM),
    (13, Errno::EACCES),
    (14, Errno::EFAULT),
    (16, Errno::EBUSY),
    (17, Errno::EEXIST),
    (18, Errno::EXDEV),
    (19, Errno::ENODEV),
    (21, Errno::EISDIR),
    (22, Errno::EINVAL),
    (28, Errno::ENOSPC),
    (30, Errno::EROFS),
    (34, Errno::ERANGE),
    (35, Errno::EDEADLK),
    (36, Errno::ENAMETOOLONG),
    (38, Errno::ENOSYS),
    (39, Errno::ENOTEMPTY),
    (61, Errno::ENODATA),
    (62, Errno::ETIME),
    (75, Errno::EOVERFLOW),
    (85, Errno::ERESTART),
    (95, Errno::EOPNOTSUPP),
    (106, Errno::EISCONN),
    (107, Errno::ENOTCONN),
    (110, Errno::ETIMEDOUT),
];

impl Errno {
    /// The errno for a positive error number.
    pub fn from_code(code: i64) -> Errno {
        TABLE
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, e)| *e)
            .unwrap_or(Errno::Other(code))
    }

    /// The positive error number.
    pub fn code(self) -> i64 {
        match self {
            Errno::Other(c) => c,
            e => TABLE
                .iter()
                .find(|(_, t)| *t == e)
                .map(|(c, _)| *c)
                .unwrap_or(0),
        }
    }

    /// Interpret a raw hypercall return value: negative is `-errno`,
    /// anything else is success and returned unchanged.
    pub fn from_ret(ret: i64) -> Result<u64, Errno> {
        if ret < 0 {
            Err(Errno::from_code(ret.wrapping_neg()))
        } else {
            Ok(ret as u64)
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Errno::Other(c) => write!(f, "errno {c}"),
            e => fmt::Debug::fmt(e, f),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_round_trip() {
        for (code, e) in TABLE {
            assert_eq!(Errno::from_code(*code), *e);
            assert_eq!(e.code(), *code);
        }
    }

    #[test]
    fn return_values() {
        assert_eq!(Errno::from_ret(0), Ok(0));
        assert_eq!(Errno::from_ret(0x4_0011), Ok(0x4_0011));
        assert_eq!(Errno::from_ret(-38), Err(Errno::ENOSYS));
        assert_eq!(Errno::from_ret(-22), Err(Errno::EINVAL));
        assert_eq!(Errno::from_ret(-1000), Err(Errno::Other(1000)));
    }

    #[test]
    fn display() {
        use std::string::ToString;
        assert_eq!(Errno::EAGAIN.to_string(), "EAGAIN");
        assert_eq!(Errno::Other(200).to_string(), "errno 200");
    }
}
