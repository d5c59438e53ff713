//! The repository described for people: in words (`text`, shared with `info` and
//! `snapshots`), and as a self-contained HTML page with SVG charts (`pgcairn report`): what is
//! gathered (`data`), how charts are drawn (`svg`, `charts`) and the page around them (`page`).

pub mod charts;
pub mod data;
pub mod page;
pub mod svg;
pub mod text;
