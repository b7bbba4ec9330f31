//! Reports of `stagegate check`: a streamed JSON document and a grouped human summary.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::{PayloadViolation, Summary, ViolationSink};
use crate::manifest::Manifest;

/// Writes the JSON report as violations arrive.
///
/// The document is `{"violations": […], "payloads": N, "verdict": V}`: the counts
/// come last so that the report streams, whatever the number of violations.
pub struct JsonReport<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> JsonReport<W> {
    /// Starts the document.
    pub fn start(mut out: W) -> io::Result<Self> {
        out.write_all(b"{\"violations\": [")?;
        Ok(JsonReport { out, written: 0 })
    }

    /// Closes the document with the counts and the verdict.
    pub fn finish(mut self, summary: &Summary) -> io::Result<W> {
        if self.written > 0 {
            self.out.write_all(b"\n")?;
        }
        writeln!(
            self.out,
            "], \"payloads\": {}, \"verdict\": \"{}\"}}",
            summary.payloads,
            summary.verdict().as_str()
        )?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Closes the document after an input failed mid-way: the violations so far, the
    /// counts so far, `"verdict": "error"` and the error. Still one JSON document.
    pub fn fail(mut self, summary: &Summary, error: &str) -> io::Result<W> {
        if self.written > 0 {
            self.out.write_all(b"\n")?;
        }
        let tail = serde_json::json!({"error": error});
        writeln!(
            self.out,
            "], \"payloads\": {}, \"verdict\": \"error\", \"error\": {}}}",
            summary.payloads, tail["error"]
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> ViolationSink for JsonReport<W> {
    fn violation(&mut self, violation: PayloadViolation) -> io::Result<()> {
        self.out
            .write_all(if self.written == 0 { b"\n  " } else { b",\n  " })?;
        serde_json::to_writer(&mut self.out, &violation)?;
        self.written += 1;
        Ok(())
    }
}

/// Collects violations by contract for a human summary, keeping a few of each.
pub struct HumanReport {
    shown_per_contract: usize,
    groups: BTreeMap<GroupKey, Group>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    order: usize,
    name: Option<String>,
}

#[derive(Default)]
struct Group {
    total: u64,
    kept: Vec<PayloadViolation>,
}

impl HumanReport {
    /// A report that shows at most `shown_per_contract` violations of each contract.
    pub fn new(shown_per_contract: usize) -> Self {
        HumanReport {
            shown_per_contract,
            groups: BTreeMap::new(),
        }
    }

    /// Renders the summary.
    pub fn render(&self, manifest: &Manifest, sources: &[String], summary: &Summary) -> String {
        let mut out = String::new();
        let count = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        out.push_str(&format!(
            "checked {} from {} against {}: {} (verdict: {})\n",
            count(summary.payloads, "payload"),
            sources.join(", "),
            manifest.path.display(),
            count(summary.violations, "violation"),
            summary.verdict().as_str(),
        ));
        if summary.payloads == 0 {
            out.push_str("note: the input held no payloads\n");
        }
        for (key, group) in &self.groups {
            out.push('\n');
            match key
                .name
                .as_deref()
                .and_then(|name| manifest.contracts.get(name))
            {
                Some(contract) => out.push_str(&format!(
                    "{}  {} · owner {} · {}\n",
                    contract.name(),
                    contract.severity(),
                    contract.ticket_owner(),
                    count(group.total, "violation")
                )),
                None => out.push_str(&format!(
                    "payloads no contract can judge  block-release · {}\n",
                    count(group.total, "violation")
                )),
            }
            for v in &group.kept {
                let path = if v.path.is_empty() {
                    String::new()
                } else {
                    format!("  {}", v.path)
                };
                out.push_str(&format!(
                    "  {}:{}  {}{}\n",
                    v.file,
                    v.line,
                    v.rule.as_str(),
                    path
                ));
                out.push_str(&format!("      {}\n", v.message));
                if let Some(assertion) = &v.assertion {
                    out.push_str(&format!("      assertion: {assertion}\n"));
                }
            }
            let hidden = group.total - group.kept.len() as u64;
            if hidden > 0 {
                out.push_str(&format!(
                    "  … and {hidden} more (`--format json` lists every violation)\n"
                ));
            }
        }
        out
    }

    fn key(&self, manifest_order: Option<usize>, name: Option<String>) -> GroupKey {
        GroupKey {
            order: manifest_order.unwrap_or(usize::MAX),
            name,
        }
    }
}

/// A [`HumanReport`] bound to its manifest, so groups follow the manifest's order.
pub struct HumanSink<'a> {
    /// The report being filled.
    pub report: HumanReport,
    /// The manifest, for contract order.
    pub manifest: &'a Manifest,
}

impl ViolationSink for HumanSink<'_> {
    fn violation(&mut self, violation: PayloadViolation) -> io::Result<()> {
        let order = violation
            .contract
            .as_deref()
            .and_then(|n| self.manifest.contracts.index_of(n));
        let key = self.report.key(order, violation.contract.clone());
        let limit = self.report.shown_per_contract;
        let group = self.report.groups.entry(key).or_default();
        group.total += 1;
        if group.kept.len() < limit {
            group.kept.push(violation);
        }
        Ok(())
    }
}
