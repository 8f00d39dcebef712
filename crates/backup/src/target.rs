//! Where backups are kept: a local folder (the default) or S3-compatible object storage, both
//! through the `object_store` crate. The API here is blocking (it owns a small runtime), so
//! call it from a plain thread or `spawn_blocking`, not from inside an async task.

use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};

use crate::error::BackupError;

pub struct Target {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Runtime,
    location: String,
}

impl Target {
    /// `s3://bucket/prefix` (endpoint, region and credentials from the usual `AWS_*`
    /// environment variables, `AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for a local server) or a
    /// folder path, created if missing.
    pub fn open(location: &str) -> Result<Target, BackupError> {
        let store: Arc<dyn ObjectStore> = if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BackupError::BadTarget(format!(
                    "{location}: no bucket after s3://"
                )));
            }
            let s3 = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| BackupError::BadTarget(format!("{location}: {e}")))?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            }
        } else if location.contains("://") {
            return Err(BackupError::BadTarget(format!(
                "{location}: only s3:// URLs and folder paths are supported"
            )));
        } else {
            std::fs::create_dir_all(location)?;
            Arc::new(
                LocalFileSystem::new_with_prefix(location)
                    .map_err(|e| BackupError::BadTarget(format!("{location}: {e}")))?,
            )
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Target {
            store,
            runtime,
            location: location.to_owned(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        let path = ObjectPath::from(name);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))?;
        Ok(())
    }

    /// The piece's bytes, `None` when it is not there.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, BackupError> {
        let path = ObjectPath::from(name);
        self.runtime.block_on(async {
            match self.store.get(&path).await {
                Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Names and sizes of the pieces under `prefix`, sorted by name.
    pub fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BackupError> {
        let prefix = ObjectPath::from(prefix);
        let mut found = self.runtime.block_on(async {
            let mut stream = self.store.list(Some(&prefix));
            let mut found = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                found.push((meta.location.to_string(), meta.size));
            }
            Ok::<_, BackupError>(found)
        })?;
        found.sort();
        Ok(found)
    }

    pub fn delete(&self, name: &str) -> Result<(), BackupError> {
        let path = ObjectPath::from(name);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_folder_round_trip_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::open(dir.path().join("b").to_str().unwrap()).unwrap();
        target.put("x/one", b"1".to_vec()).unwrap();
        target.put("x/two", b"22".to_vec()).unwrap();
        assert_eq!(target.get("x/one").unwrap().unwrap(), b"1");
        assert_eq!(target.get("x/none").unwrap(), None);
        assert_eq!(
            target.list("x").unwrap(),
            vec![("x/one".to_owned(), 1), ("x/two".to_owned(), 2)]
        );
        target.delete("x/one").unwrap();
        assert_eq!(target.list("x").unwrap().len(), 1);
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(
            Target::open("ftp://x/y"),
            Err(BackupError::BadTarget(_))
        ));
        assert!(matches!(
            Target::open("s3:///x"),
            Err(BackupError::BadTarget(_))
        ));
    }
}
