//! `wayfare dashboard`: asks the daemon for a one-time link to its web dashboard.

use wayfare_node::dashboard::DashboardLink;

use crate::{
    node_cmd::{ApiArgs, Client},
    output,
};

/// Prints the link (it works once, for a few minutes, from a browser on this machine).
pub async fn run(a: ApiArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let link: DashboardLink = c.post("/v1/dashboard/link", serde_json::json!({})).await?;
    if a.json {
        return output::json(&link);
    }
    println!("{}", link.url);
    println!(
        "open it in a browser on this machine within {} s; it works once (later, log in with the token in DATA_DIR/api-token)",
        link.expires_in
    );
    Ok(())
}
