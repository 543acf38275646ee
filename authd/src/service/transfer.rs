//! Import and export of keys.json through the daemon (`futucli import-keys`,
//! `export-keys`), a chunk of text at a time: a keys.json can be larger than a frame.
//!
//! An import's chunks are kept under its id until the last one arrives; then the whole
//! text is read as strictly as keys.json (a file `--check-config` refuses is refused, with
//! the same positioned error) and merged into the key store by the same change closure
//! whichever store it is ([`futu_auth_keys::store::KeysFile::import`]: under keys.json's
//! lock, or in one transaction of the shared store). An export reads the store once, as it
//! is at its first request, and hands out that text a chunk at a time.

use std::path::Path;
use std::sync::Arc;

use futu_auth_keys::store::{KeysFile, StoreError};
use futu_auth_proto::{keys_chunk_end, ErrorKind, Imported, Response, MAX_IMPORT_LEN};

use super::admin::{error, keyring_error};
use super::kept::{no_random, Kept};
use super::Authd;

/// What the file of an import is called in its errors (the daemon is not told its name).
const IMPORTED: &str = "the imported file";

/// One chunk of an import, as [`futu_auth_proto::Request::ImportKeys`] carries it.
pub(super) struct Part {
    /// 0 to start, then the import of the previous answer.
    pub import: u64,
    /// Bytes sent before this chunk.
    pub offset: u64,
    /// The next bytes of the file.
    pub chunk: String,
    /// Whether the file ends with this chunk.
    pub last: bool,
    /// Whether ids the store holds are replaced.
    pub replace: bool,
}

/// Imports being received and exports being sent.
#[derive(Default)]
pub(super) struct Transfers {
    /// Each import's text so far.
    imports: Kept<String>,
    /// Each export's text.
    exports: Kept<Arc<String>>,
}

impl Authd {
    /// [`futu_auth_proto::Request::ImportKeys`].
    pub(super) async fn import_keys(&self, request_id: u64, part: Part) -> Response {
        let id = if part.import == 0 {
            match self.transfers.imports.start(String::new()) {
                Ok(id) => id,
                Err(e) => return no_random(request_id, e),
            }
        } else {
            part.import
        };
        let received = self.transfers.imports.with(id, |text| {
            let have = text.len() as u64;
            if part.offset != have {
                return Err(format!(
                    "a chunk at offset {} of an import that has received {have} bytes; send the chunk at {have}",
                    part.offset
                ));
            }
            if have + part.chunk.len() as u64 > MAX_IMPORT_LEN {
                return Err(format!(
                    "the file is longer than an import takes ({} MiB)",
                    MAX_IMPORT_LEN >> 20
                ));
            }
            text.push_str(&part.chunk);
            Ok(text.len() as u64)
        });
        let next_offset = match received {
            None => {
                return error(
                    request_id,
                    ErrorKind::ListingExpired,
                    "this import is gone (unused for a minute, or replaced by newer ones); start again"
                        .into(),
                )
            }
            Some(Err(why)) => {
                self.transfers.imports.finish(id);
                return error(request_id, ErrorKind::InvalidSpec, why);
            }
            Some(Ok(n)) => n,
        };
        if !part.last {
            return Response::KeysImported {
                request_id,
                import: id,
                next_offset,
                done: None,
            };
        }
        let text = self.transfers.imports.finish(id).unwrap_or_default();
        let parsed = tokio::task::spawn_blocking(move || KeysFile::parse(&text, Path::new(IMPORTED))).await;
        let file = match parsed {
            Ok(Ok(file)) => file,
            Ok(Err(e @ StoreError::Invalid(_))) => {
                return error(request_id, ErrorKind::InvalidSpec, e.to_string())
            }
            Ok(Err(e)) => return error(request_id, ErrorKind::Internal, e.to_string()),
            Err(e) => return error(request_id, ErrorKind::Internal, e.to_string()),
        };
        let replace = part.replace;
        let merged = self
            .keys
            .update(move |f| {
                let merged = f.import(file, replace)?;
                Ok((merged, f.keys.len()))
            })
            .await;
        match merged {
            Ok((merged, total)) => {
                let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                Response::KeysImported {
                    request_id,
                    import: id,
                    next_offset,
                    done: Some(Imported {
                        added: count(merged.added),
                        replaced: count(merged.replaced),
                        total: count(total),
                        stored_in: self.keys.stored_in(),
                    }),
                }
            }
            Err(e) => keyring_error(request_id, e),
        }
    }

    /// [`futu_auth_proto::Request::ExportKeys`]: `export` 0 reads the store as it is now.
    pub(super) async fn export_keys(&self, request_id: u64, export: u64, offset: u64) -> Response {
        let (id, text) =
            if export == 0 {
                let text = match self.keys.read_file().await {
                    Ok(file) => Arc::new(file.to_json()),
                    Err(e) => return keyring_error(request_id, e),
                };
                match self.transfers.exports.start(Arc::clone(&text)) {
                    Ok(id) => (id, text),
                    Err(e) => return no_random(request_id, e),
                }
            } else {
                match self.transfers.exports.with(export, |text| Arc::clone(text)) {
                    Some(text) => (export, text),
                    None => return error(
                        request_id,
                        ErrorKind::ListingExpired,
                        "this export is gone (unused for a minute, or replaced by newer ones); start again"
                            .into(),
                    ),
                }
            };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        if start > text.len() || !text.is_char_boundary(start) {
            return error(
                request_id,
                ErrorKind::InvalidSpec,
                format!(
                    "offset {offset} is not where a chunk of this export starts (it has {} bytes)",
                    text.len()
                ),
            );
        }
        let end = keys_chunk_end(&text, start);
        if end == text.len() {
            self.transfers.exports.finish(id);
        }
        Response::KeysExport {
            request_id,
            export: id,
            offset,
            total: text.len() as u64,
            chunk: text[start..end].to_owned(),
        }
    }
}
