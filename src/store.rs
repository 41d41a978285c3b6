//! Object-store access, a leaf: where a dataset's files live (an object store, a listing prefix
//! and a glob), listing them, and streaming one to a local file.
//!
//! `./data/yellow/*.parquet` is a local directory (the default); `s3://bucket/trips/*.parquet`,
//! `gs://…`, `az://…` and `https://…` go through `object_store`. Listing uses the literal prefix of
//! the glob (the cheapest listing every store offers) and matches keys with `globset`.

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use globset::{GlobBuilder, GlobMatcher};
use object_store::ObjectStoreExt;
use object_store::{aws::AmazonS3Builder, local::LocalFileSystem, path::Path, ClientOptions, ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// How to reach S3 (from the `--s3-*` flags; unset fields fall back to the `AWS_*` variables).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
    pub anonymous: bool,
    pub request_timeout: Option<Duration>,
    pub retry_timeout: Option<Duration>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// The key inside the store (for local datasets: relative to the base directory).
    pub key: String,
    pub size: u64,
    pub etag: String,
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone)]
pub struct Location {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    glob: GlobMatcher,
    /// Set for local datasets: DuckDB reads the files in place.
    pub local_root: Option<PathBuf>,
}

fn has_glob(segment: &str) -> bool {
    segment.contains(['*', '?', '[', '{'])
}

/// Splits `a/b/*.parquet` into (`a/b`, `*.parquet`): the literal directory and the pattern.
fn split_glob(path: &str) -> (String, String) {
    let segments: Vec<&str> = path.split('/').collect();
    let literal = segments.iter().take_while(|s| !has_glob(s)).count();
    if literal == segments.len() {
        // No wildcard: a single file, or a directory meaning "every .parquet below it".
        return (path.to_string(), String::new());
    }
    (segments[..literal].join("/"), segments[literal..].join("/"))
}

fn matcher(pattern: &str) -> Result<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::invalid(format!("bad glob {pattern:?}: {e}")))
}

/// object_store's own retry (exponential backoff with jitter), bounded in count and total time.
fn retry(s3: &S3Settings) -> RetryConfig {
    let budget = s3.retry_timeout.unwrap_or(Duration::from_secs(20));
    RetryConfig { max_retries: 5, retry_timeout: budget, ..Default::default() }
}

/// A standard boolean environment variable (`AWS_ALLOW_HTTP=true`).
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Bridge's flags win; unset, the standard `AWS_*` variable decides (as object_store reads it).
fn allow_http(s3: &S3Settings) -> bool {
    s3.allow_http || env_flag("AWS_ALLOW_HTTP")
}

fn client_options(s3: &S3Settings) -> ClientOptions {
    let mut o = ClientOptions::new().with_allow_http(allow_http(s3));
    if let Some(t) = s3.request_timeout {
        o = o.with_timeout(t).with_connect_timeout(t.min(Duration::from_secs(5)));
    }
    o
}

impl Location {
    pub fn parse(url: &str, s3: &S3Settings) -> Result<Self> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key_glob) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry(s3))
                .with_client_options(client_options(s3));
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let (Some(k), Some(s)) = (&s3.access_key_id, &s3.secret_access_key) {
                b = b.with_access_key_id(k).with_secret_access_key(s);
            }
            // The standard AWS_* variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_SESSION_TOKEN, …) were
            // read by from_env above; Bridge's own flags, when set, override them.
            b = b.with_allow_http(allow_http(s3));
            if s3.anonymous || env_flag("AWS_SKIP_SIGNATURE") {
                b = b.with_skip_signature(true);
            }
            let store = b.build().map_err(|e| Error::invalid(format!("S3 configuration for {url}: {e}")))?;
            return Self::remote(url, Arc::new(store), key_glob);
        }
        if url.contains("://") && !url.starts_with("file://") {
            let parsed = url::Url::parse(url).map_err(|e| Error::invalid(format!("bad dataset URL {url:?}: {e}")))?;
            // Credentials for gs/az/http come from the store's standard environment variables.
            let env = std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v));
            let (store, _) = object_store::parse_url_opts(&parsed, env)
                .map_err(|e| Error::invalid(format!("dataset URL {url}: {e}")))?;
            let key_glob = parsed.path().trim_start_matches('/').to_string();
            return Self::remote(url, Arc::from(store), &key_glob);
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        let (dir, pattern) = split_glob(path);
        let (dir, pattern) = if pattern.is_empty() {
            if std::path::Path::new(&dir).is_dir() {
                (dir, "**/*.parquet".to_string())
            } else {
                let p = std::path::Path::new(&dir);
                let parent = p.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (parent, name)
            }
        } else {
            (dir, pattern)
        };
        let dir = if dir.is_empty() { ".".to_string() } else { dir };
        std::fs::create_dir_all(&dir).map_err(|e| Error::invalid(format!("dataset directory {dir}: {e}")))?;
        let root = std::fs::canonicalize(&dir).map_err(|e| Error::invalid(format!("dataset directory {dir}: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| Error::invalid(format!("{dir}: {e}")))?;
        Ok(Location {
            url: url.to_string(),
            store: Arc::new(store),
            prefix: None,
            glob: matcher(&pattern)?,
            local_root: Some(root),
        })
    }

    fn remote(url: &str, store: Arc<dyn ObjectStore>, key_glob: &str) -> Result<Self> {
        let (prefix, pattern) = split_glob(key_glob);
        let pattern = if pattern.is_empty() {
            format!("{}/**/*.parquet", prefix.trim_end_matches('/'))
        } else {
            format!("{prefix}/{pattern}")
        };
        let pattern = pattern.trim_start_matches('/').to_string();
        let prefix = (!prefix.is_empty()).then(|| Path::from(prefix.as_str()));
        Ok(Location { url: url.to_string(), store, prefix, glob: matcher(&pattern)?, local_root: None })
    }

    /// Every object under the prefix that matches the glob, sorted by key.
    pub async fn list(&self) -> Result<Vec<ObjectEntry>> {
        let metas: Vec<_> = self.store.list(self.prefix.as_ref()).try_collect().await?;
        let mut out: Vec<ObjectEntry> = metas
            .into_iter()
            .filter(|m| self.glob.is_match(m.location.as_ref()))
            // Writers that upload to a temporary name first use a dot prefix; skip those.
            .filter(|m| !m.location.filename().is_some_and(|n| n.starts_with('.')))
            .map(|m| ObjectEntry {
                key: m.location.to_string(),
                size: m.size,
                etag: m.e_tag.unwrap_or_else(|| format!("{}-{}", m.size, m.last_modified.timestamp_micros())),
                last_modified: m.last_modified,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

impl Location {
    /// Streams `entry` to the local file `to` (never whole in memory); fails if the object's size
    /// changed meanwhile.
    pub async fn download(&self, entry: &ObjectEntry, to: &std::path::Path) -> Result<()> {
        let key = Path::from(entry.key.as_str());
        let mut stream = self.store.get(&key).await?.into_stream();
        let mut file = tokio::fs::File::create(to).await.map_err(Error::internal)?;
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(Error::internal)?;
        }
        file.flush().await.map_err(Error::internal)?;
        if written != entry.size {
            return Err(Error::Unavailable(format!(
                "{} changed while downloading ({written} of {} bytes)",
                entry.key, entry.size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_globs_at_the_first_wildcard() {
        assert_eq!(split_glob("data/yellow/*.parquet"), ("data/yellow".into(), "*.parquet".into()));
        assert_eq!(split_glob("trips/20*/y_*.parquet"), ("trips".into(), "20*/y_*.parquet".into()));
        assert_eq!(split_glob("a/b.parquet"), ("a/b.parquet".into(), String::new()));
    }

    #[test]
    fn star_does_not_cross_directories() {
        let m = matcher("trips/*.parquet").expect("glob");
        assert!(m.is_match("trips/a.parquet"));
        assert!(!m.is_match("trips/old/a.parquet"));
        assert!(matcher("trips/**/*.parquet").expect("glob").is_match("trips/old/a.parquet"));
    }
}
