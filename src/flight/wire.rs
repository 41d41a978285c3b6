//! What a client may ask of the wire with request headers (gRPC metadata), per call:
//!
//! * `bridge-max-message-bytes`: the largest Arrow IPC message it accepts (e.g. `16MiB`), from
//!   2 MiB (the default, under gRPC's usual 4 MiB receive limit) to 32 MiB (half the server's
//!   64 MiB gRPC limit). Larger messages cost fewer per-message overheads on bulk answers; the client must
//!   raise its own receive limit to match.
//! * `bridge-ipc-compression`: `lz4` (LZ4_FRAME) or `zstd` compresses the record batch
//!   buffers (Arrow IPC buffer compression, which every Arrow reader decodes), for clients on
//!   slow links; `none` is the default.
//!
//! A value Bridge cannot honour is refused (InvalidArgument), never silently ignored.

use arrow::ipc::{writer::IpcWriteOptions, CompressionType};
use tonic::{metadata::MetadataMap, Status};

use crate::engine::MESSAGE_BYTES;

pub const MAX_MESSAGE_HEADER: &str = "bridge-max-message-bytes";
pub const COMPRESSION_HEADER: &str = "bridge-ipc-compression";
/// The largest message a client may ask for: half the server's gRPC encoding limit (64 MiB),
/// room for a message's header and framing.
pub const MAX_MESSAGE_LIMIT: usize = 32 * 1024 * 1024;

/// One call's wire options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wire {
    /// Asked for; None keeps the default (2 MiB).
    pub max_message_bytes: Option<usize>,
    pub compression: Option<CompressionType>,
}

impl Wire {
    pub fn from_metadata(md: &MetadataMap) -> Result<Self, Status> {
        let header = |name: &str| -> Result<Option<String>, Status> {
            md.get(name)
                .map(|v| v.to_str().map(|s| s.trim().to_ascii_lowercase()))
                .transpose()
                .map_err(|_| Status::invalid_argument(format!("{name} must be ASCII")))
        };
        let max_message_bytes = match header(MAX_MESSAGE_HEADER)? {
            None => None,
            Some(v) => {
                let n = crate::config::parse_bytes(&v)
                    .map_err(|e| Status::invalid_argument(format!("{MAX_MESSAGE_HEADER}: {e}")))?
                    as usize;
                if !(MESSAGE_BYTES..=MAX_MESSAGE_LIMIT).contains(&n) {
                    return Err(Status::invalid_argument(format!(
                        "{MAX_MESSAGE_HEADER} must be between {MESSAGE_BYTES} (2 MiB, the default) and \
                         {MAX_MESSAGE_LIMIT} (32 MiB) bytes; got {n}"
                    )));
                }
                Some(n)
            }
        };
        let compression = match header(COMPRESSION_HEADER)?.as_deref() {
            None | Some("none") => None,
            Some("lz4") | Some("lz4_frame") => Some(CompressionType::LZ4_FRAME),
            Some("zstd") => Some(CompressionType::ZSTD),
            Some(other) => {
                return Err(Status::invalid_argument(format!(
                    "{COMPRESSION_HEADER} must be lz4, zstd or none; got {other:?}"
                )))
            }
        };
        Ok(Wire { max_message_bytes, compression })
    }

    /// The IPC options that encode this call's messages.
    pub fn ipc_options(&self) -> IpcWriteOptions {
        IpcWriteOptions::default()
            .try_with_compression(self.compression)
            .expect("the IPC compression codecs are compiled in (arrow's ipc_compression feature)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(headers: &[(&'static str, &str)]) -> Result<Wire, Status> {
        let mut md = MetadataMap::new();
        for (k, v) in headers {
            md.insert(*k, v.parse().expect("ascii"));
        }
        Wire::from_metadata(&md)
    }

    #[test]
    fn headers_are_read_and_checked() {
        assert_eq!(wire(&[]).expect("default"), Wire::default());
        let w = wire(&[(MAX_MESSAGE_HEADER, "16MiB"), (COMPRESSION_HEADER, "ZSTD")]).expect("valid");
        assert_eq!(w.max_message_bytes, Some(16 << 20));
        assert_eq!(w.compression, Some(CompressionType::ZSTD));
        assert_eq!(wire(&[(COMPRESSION_HEADER, "lz4")]).expect("lz4").compression, Some(CompressionType::LZ4_FRAME));
        for bad in ["1KiB", "1GiB", "lots"] {
            let e = wire(&[(MAX_MESSAGE_HEADER, bad)]).expect_err(bad);
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert!(wire(&[(COMPRESSION_HEADER, "gzip")]).is_err());
        let _ = w.ipc_options();
    }
}
