//! `phoenix users ...`: manage console users on a running server. The data dir belongs to the running
//! server (it holds a lock), so this is an HTTP client of `/users` authenticated with the admin secret.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::BufRead;

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a console user (the first ADMIN is made this way, or with `POST /users`).
    Create {
        #[arg(long)]
        username: String,
        /// `ADMIN` or `VIEWER`.
        #[arg(long, default_value = "VIEWER")]
        role: String,
        /// Read the password from the first line of standard input (default: generate one and print it).
        #[arg(long)]
        password_stdin: bool,
        /// The running server (default: http:// + PHOENIX_LISTEN).
        #[arg(long)]
        server: Option<String>,
    },
    /// List console users.
    List {
        /// The running server (default: http:// + PHOENIX_LISTEN).
        #[arg(long)]
        server: Option<String>,
    },
}

fn server_url(server: Option<String>, listen: &str) -> String {
    server
        .unwrap_or_else(|| format!("http://{}", listen.trim()))
        .trim_end_matches('/')
        .to_owned()
}

async fn send(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let reply = request.send().await.with_context(|| {
        format!("{what}: cannot reach the server (is `phoenix serve` running?)")
    })?;
    let status = reply.status();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = body["error"]["message"].as_str().unwrap_or("no detail");
        bail!("{what}: HTTP {}: {message}", status.as_u16());
    }
    Ok(body)
}

pub async fn run(
    command: UsersCommand,
    listen: String,
    admin_secret: Option<String>,
) -> anyhow::Result<()> {
    let secret = admin_secret.context(
        "PHOENIX_ADMIN_SECRET (or --admin-secret) is required: it authenticates this command to the server",
    )?;
    let client = reqwest::Client::new();
    match command {
        UsersCommand::Create {
            username,
            role,
            password_stdin,
            server,
        } => {
            let base = server_url(server, &listen);
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (crate::demo::random_password(), true)
            };
            let user = send(
                client
                    .post(format!("{base}/users"))
                    .bearer_auth(&secret)
                    .json(&json!({"username": username, "password": password, "role": role})),
                "creating the user",
            )
            .await?;
            println!(
                "created {} ({})",
                user["username"].as_str().unwrap_or_default(),
                user["role"].as_str().unwrap_or_default()
            );
            if generated {
                println!("password: {password}");
            }
        }
        UsersCommand::List { server } => {
            let base = server_url(server, &listen);
            let list = send(
                client.get(format!("{base}/users")).bearer_auth(&secret),
                "listing users",
            )
            .await?;
            for user in list["users"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    user["username"].as_str().unwrap_or_default(),
                    user["role"].as_str().unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}
