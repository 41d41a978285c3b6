//! Brings a remote object to a local file that DuckDB can read.
//!
//! The object is streamed to a temporary name in the cache directory (never held whole in memory)
//! and renamed into place once complete, so a half-downloaded file is never read. The name is a
//! hash of (url, key, ETag): a changed object gets a new name.

use std::path::{Path as FsPath, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::{Location, ObjectEntry};
use crate::{
    error::{Error, Result},
    metrics,
};

/// The local path DuckDB should read for `entry`, downloading it into `cache_dir` if it is remote.
#[tracing::instrument(name = "fetch", skip_all, fields(key = %entry.key))]
pub async fn local_copy(location: &Location, entry: &ObjectEntry, cache_dir: &FsPath) -> Result<PathBuf> {
    let digest = Sha256::digest(format!("{}\n{}\n{}", location.url, entry.key, entry.etag));
    let dir = cache_dir.join("objects");
    let path = dir.join(format!("{}.parquet", hex::encode(&digest[..16])));
    if let Some(root) = &location.local_root {
        let file = root.join(&entry.key);
        // DuckDB may only read under the dataset's directory: a file that is a symlink to
        // somewhere else is read through a copy in the download directory.
        let real =
            tokio::fs::canonicalize(&file).await.map_err(|e| Error::Unavailable(format!("{}: {e}", file.display())))?;
        if real.starts_with(root) {
            return Ok(file);
        }
        tokio::fs::create_dir_all(&dir).await.map_err(Error::internal)?;
        tokio::fs::copy(&real, &path).await.map_err(|e| Error::Unavailable(format!("{}: {e}", real.display())))?;
        return Ok(path);
    }
    tokio::fs::create_dir_all(&dir).await.map_err(Error::internal)?;
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.len() == entry.size) {
        metrics::CACHE_HITS.with_label_values(&[location.url.as_str()]).inc();
        return Ok(path);
    }
    let tmp = dir.join(format!(".{}.part", hex::encode(&digest[..16])));
    metrics::STORE_REQUESTS.with_label_values(&["get"]).inc();
    let result = download(location, entry, &tmp).await;
    if let Err(e) = result {
        metrics::store_error("get");
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &path).await.map_err(Error::internal)?;
    Ok(path)
}

#[tracing::instrument(name = "object_store.get", skip_all, fields(key = %entry.key, bytes = entry.size))]
async fn download(location: &Location, entry: &ObjectEntry, tmp: &FsPath) -> Result<()> {
    location.download(entry, tmp).await
}

/// Removes what an earlier process left in the download directory: partial downloads (`.part`)
/// and copies it had not ingested yet. Called before anything is fetched.
pub fn remove_partial_downloads(cache_dir: &FsPath) {
    let Ok(entries) = std::fs::read_dir(cache_dir.join("objects")) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed a leftover download"),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove a leftover download"),
        }
    }
}

/// Removes a downloaded copy once its rows are in the store (a local dataset's own files are
/// never touched).
pub async fn release(location: &Location, path: &FsPath) {
    if location.local_root.as_ref().is_none_or(|root| !path.starts_with(root)) {
        let _ = tokio::fs::remove_file(path).await;
    }
}
