//! Named value lists for `PATH in NAME` assertions (`supported_languages`, …).
//!
//! A list is a text file, one value a line, `#` comments and blank lines ignored. The
//! manifest may name its lists' files under `lists:`; otherwise `sandbox/NAME.txt` is
//! looked for beside the manifest and in its parent folders, so a repository laid out
//! like this one needs no configuration; last come the lists built into the binary, so
//! a manifest kept anywhere still finds the lists stagegate ships.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lists compiled into the binary, by name.
const BUILT_IN: &[(&str, &str)] = &[(
    "supported_languages",
    include_str!("../../sandbox/supported_languages.txt"),
)];

/// One named list of allowed values.
#[derive(Debug)]
pub struct NamedList {
    name: String,
    origin: String,
    values: Vec<String>,
    lookup: HashSet<String>,
}

impl NamedList {
    /// Builds a list from the text of a list file.
    pub fn from_text(name: &str, origin: &str, text: &str) -> Self {
        let values: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let lookup = values.iter().cloned().collect();
        NamedList {
            name: name.to_owned(),
            origin: origin.to_owned(),
            values,
            lookup,
        }
    }

    /// The list's name as assertions use it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the list was read from (a path, or `built-in`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The values in file order.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `value` is in the list (exact match).
    pub fn contains(&self, value: &str) -> bool {
        self.lookup.contains(value)
    }
}

/// Why a list could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot read list `{name}` from {}", path.display())]
pub struct ListError {
    /// The list's name.
    pub name: String,
    /// The file that failed.
    pub path: PathBuf,
    /// The I/O failure.
    #[source]
    pub source: std::io::Error,
}

/// Where lists are looked up, in order: explicit files, `sandbox/` folders, built-ins.
#[derive(Debug, Default)]
pub struct ListCatalog {
    explicit: BTreeMap<String, PathBuf>,
    search_dirs: Vec<PathBuf>,
    loaded: std::sync::Mutex<BTreeMap<String, Arc<NamedList>>>,
}

impl ListCatalog {
    /// A catalog for a manifest at `manifest_path` with its `lists:` entries (relative
    /// paths are taken from the manifest's folder).
    pub fn for_manifest(manifest_path: &Path, explicit: &BTreeMap<String, String>) -> Self {
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        let explicit = explicit
            .iter()
            .map(|(name, file)| (name.clone(), base.join(file)))
            .collect();
        let search_dirs = base.ancestors().map(|dir| dir.join("sandbox")).collect();
        ListCatalog {
            explicit,
            search_dirs,
            loaded: Default::default(),
        }
    }

    /// A catalog that only knows the built-in lists.
    pub fn built_in() -> Self {
        ListCatalog::default()
    }

    /// The list called `name`, loading it on first use; `Ok(None)` if no such list exists.
    pub fn get(&self, name: &str) -> Result<Option<Arc<NamedList>>, ListError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(list) = loaded.get(name) {
            return Ok(Some(Arc::clone(list)));
        }
        let list = match self.locate(name) {
            Some(path) => {
                let text = crate::limits::read_regular_text(&path, crate::limits::LIST_FILE_BYTES)
                    .map_err(|source| ListError {
                        name: name.to_owned(),
                        path: path.clone(),
                        source,
                    })?;
                NamedList::from_text(name, &path.display().to_string(), &text)
            }
            None => match BUILT_IN.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => NamedList::from_text(name, "built-in", text),
                None => return Ok(None),
            },
        };
        let list = Arc::new(list);
        loaded.insert(name.to_owned(), Arc::clone(&list));
        Ok(Some(list))
    }

    /// The names a `PATH in NAME` assertion could use here, for suggestions.
    pub fn known_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.explicit.keys().cloned().collect();
        names.extend(BUILT_IN.iter().map(|(n, _)| (*n).to_owned()));
        for dir in &self.search_dirs {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "txt")
                        && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                    {
                        names.push(stem.to_owned());
                    }
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    fn locate(&self, name: &str) -> Option<PathBuf> {
        if let Some(path) = self.explicit.get(name) {
            return Some(path.clone());
        }
        self.search_dirs
            .iter()
            .map(|dir| dir.join(format!("{name}.txt")))
            .find(|path| path.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_skip_comments_and_blanks() {
        let list = NamedList::from_text("langs", "test", "# header\npython\n\n  rust  \n");
        assert_eq!(list.values(), ["python", "rust"]);
        assert!(list.contains("rust"));
        assert!(!list.contains("Rust"), "matching is exact");
    }

    #[test]
    fn built_in_supported_languages_has_forty_plus_entries() {
        let list = ListCatalog::built_in()
            .get("supported_languages")
            .expect("built-in lists never fail to load")
            .expect("supported_languages is built in");
        assert!(
            list.values().len() >= 40,
            "{} languages",
            list.values().len()
        );
        assert!(list.values().iter().all(|v| v == &v.to_lowercase()));
    }

    #[test]
    fn unknown_lists_are_none() {
        let found = ListCatalog::built_in()
            .get("no_such_list")
            .expect("lookup succeeds");
        assert!(found.is_none());
    }
}
