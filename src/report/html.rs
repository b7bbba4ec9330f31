//! The HTML report: one self-contained file (no external asset, no network), the run
//! report and the per-candidate summaries embedded as JSON and rendered by a small
//! inline script, readable offline and attachable to a ticket.
//!
//! The page (`html_template.html`, compiled in) shows the verdict and the checks, each
//! failed check's findings, every candidate's integrity timeline (paged, searchable by
//! id, reachable as `#candidate=ID`), time to event per stage and risk tier with the
//! SLA breaches listed one by one, and the kill-switch scenarios' queue depth as an
//! inline SVG chart. The observation log itself is never embedded.

use super::RunReport;
use super::candidates::AuditData;

/// The page, with `/*STAGEGATE_DATA*/` where the JSON goes.
const TEMPLATE: &str = include_str!("html_template.html");

/// Renders the page for a report and its candidate data.
pub fn render(report: &RunReport, data: &AuditData) -> String {
    let payload = serde_json::json!({"report": report, "audit": data});
    // Plain structs and JSON values serialise. `<` is escaped so no string in the data
    // can close the script element; the line separators so old parsers accept it.
    let json = serde_json::to_string(&payload)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    TEMPLATE.replacen("/*STAGEGATE_DATA*/", &json, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_its_data_safely_and_fetches_nothing() {
        let mut report = super::super::fixture::blocked();
        report.change_id = "</script><script>alert(1)</script>".into();
        let data = super::super::candidates::build(
            &crate::trace::fixture::plan(),
            &crate::trace::fixture::records(),
        );
        let page = render(&report, &data);
        assert!(!page.contains("/*STAGEGATE_DATA*/"));
        assert!(
            !page.contains("</script><script>alert"),
            "data cannot close the script"
        );
        let start = page.find("application/json\">").expect("data element") + 18;
        let end = start + page[start..].find("</script>").expect("closed");
        let value: serde_json::Value = serde_json::from_str(&page[start..end]).expect("JSON");
        assert_eq!(value["report"]["change_id"], report.change_id);
        assert_eq!(
            value["audit"]["candidates"][0]["id"],
            crate::trace::fixture::A
        );
        let template = TEMPLATE.replace("\"http://www.w3.org/2000/svg\"", "");
        for external in ["http://", "https://", "src=", "@import", "url("] {
            assert!(
                !template.contains(external),
                "the template references no external asset ({external})"
            );
        }
    }
}
