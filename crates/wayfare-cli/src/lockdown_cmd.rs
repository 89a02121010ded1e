//! `wayfare lockdown on|off|status`: the buyer's kill switch as the daemon holds it.

use wayfare_node::api_types::{LockdownRequest, LockdownView, NodeStatus};

use crate::{
    node_cmd::{ApiArgs, Client},
    output,
};

/// The lockdown as `wayfare status` and `wayfare lockdown` print it.
pub(crate) fn lockdown_line(l: &LockdownView) -> String {
    let mut line = if l.engaged {
        let mut via = l.tunnels.clone();
        via.extend(l.endpoints.iter().map(|e| format!("seller {e}")));
        via.extend(l.hosts.iter().cloned());
        format!(
            "up: nothing leaves this host except via {}",
            if via.is_empty() {
                "loopback".to_string()
            } else {
                via.join(", ")
            }
        )
    } else if l.kill_switch {
        format!(
            "off (goes up at {})",
            if l.mode == "always" {
                "start"
            } else {
                "the next WireGuard connect"
            }
        )
    } else {
        "off (kill switch disabled in [buyer])".to_string()
    };
    if let Some(e) = &l.last_error {
        line.push_str(&format!("; last change failed: {e}"));
    }
    line
}

/// `wayfare lockdown on|off|status`.
#[derive(Debug, clap::Args)]
pub struct LockdownArgs {
    /// `on` puts it up now, `off` lifts it (until the next WireGuard connect, or start with
    /// `lockdown = "always"`), `status` shows it.
    #[arg(value_parser = ["on", "off", "status"], default_value = "status")]
    action: String,
}

/// `wayfare lockdown`.
pub async fn lockdown(a: ApiArgs, args: LockdownArgs) -> anyhow::Result<()> {
    let c = Client::new(&a)?;
    let view: LockdownView = match args.action.as_str() {
        "status" => {
            let s: NodeStatus = c.get("/v1/status").await?;
            s.lockdown
                .ok_or_else(|| anyhow::anyhow!("this daemon has no [buyer] role, so no lockdown"))?
        }
        on => {
            c.post(
                "/v1/lockdown",
                serde_json::to_value(LockdownRequest { on: on == "on" })?,
            )
            .await?
        }
    };
    if a.json {
        return output::json(&view);
    }
    println!("{}", lockdown_line(&view));
    Ok(())
}
