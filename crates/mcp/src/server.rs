//! The MCP server: answers `tools/list` with the three tools and runs
//! `tools/call` against the host, over stdio.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

use crate::error::Error;
use crate::tools::{self, Host, Misconfigured};
use crate::wiring::Environment;

/// The name the server reports in `serverInfo`.
pub const SERVER_NAME: &str = "traffic-guardian-mcp";

const INSTRUCTIONS: &str = "Tools of the NanoClaw traffic guardian, a host-side proxy that \
watches this agent's HTTP/HTTPS traffic for secrets leaving (EXFIL) and command injection \
arriving (INJECTION). It detects and logs; it never blocks. Use clawsec_traffic_check_config to \
verify that this container is protected, clawsec_traffic_status for an overview, and \
clawsec_traffic_findings to see redacted findings for this group.";

/// The MCP server. Cheap to clone.
#[derive(Clone)]
pub struct TrafficGuardianServer {
    host: Arc<dyn Host>,
    env: Arc<Environment>,
}

impl std::fmt::Debug for TrafficGuardianServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficGuardianServer")
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl TrafficGuardianServer {
    /// A server asking `host`, checking the wiring in `env`.
    pub fn new(host: Arc<dyn Host>, env: Environment) -> TrafficGuardianServer {
        TrafficGuardianServer {
            host,
            env: Arc::new(env),
        }
    }

    /// A server configured from the process environment: the IPC client
    /// from `NANOCLAW_TRAFFIC_GUARDIAN_IPC_DIR` and
    /// `NANOCLAW_TRAFFIC_GUARDIAN_IPC_TIMEOUT_MS`. Bad settings do not stop
    /// the server: every tool call then explains them.
    pub fn from_env() -> TrafficGuardianServer {
        let host: Arc<dyn Host> = match traffic_guardian_ipc::ClientConfig::from_env() {
            Ok(config) => {
                tracing::debug!(ipc_dir = %config.ipc_dir.display(), timeout_ms = config.timeout.as_millis() as u64, "IPC client configured");
                Arc::new(traffic_guardian_ipc::Client::new(config))
            }
            Err(err) => {
                tracing::warn!("IPC settings are invalid: {err}");
                Arc::new(Misconfigured(format!(
                    "the container's IPC settings are invalid: {err}"
                )))
            }
        };
        TrafficGuardianServer::new(host, Environment::from_process())
    }

    /// Serves MCP over stdin and stdout until the client disconnects.
    pub async fn serve_stdio(self) -> Result<(), Error> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|err| Error::Serve(err.to_string()))?;
        let reason = running
            .waiting()
            .await
            .map_err(|err| Error::Serve(err.to_string()))?;
        tracing::debug!(?reason, "MCP session ended");
        Ok(())
    }

    /// Runs a tool. Unknown tools are the only protocol error.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<&rmcp::model::JsonObject>,
    ) -> Result<CallToolResult, ErrorData> {
        match name {
            tools::STATUS => {
                if let Err(message) = tools::no_arguments(name, arguments) {
                    return Ok(tools::error_result(message));
                }
                let answer = self.blocking(|host| host.status()).await;
                Ok(tools::status_result(answer))
            }
            tools::FINDINGS => {
                let params = match tools::findings_params(arguments) {
                    Ok(params) => params,
                    Err(message) => return Ok(tools::error_result(message)),
                };
                let asked = params.clone();
                let answer = self.blocking(move |host| host.findings(asked)).await;
                Ok(tools::findings_result(&params, answer))
            }
            tools::CHECK_CONFIG => {
                if let Err(message) = tools::no_arguments(name, arguments) {
                    return Ok(tools::error_result(message));
                }
                let answer = self.blocking(|host| host.check_config()).await;
                Ok(tools::check_config_result(&self.env, answer))
            }
            other => Err(ErrorData::invalid_params(
                format!(
                    "unknown tool {other:?}; this server has {}, {} and {}",
                    tools::STATUS,
                    tools::FINDINGS,
                    tools::CHECK_CONFIG
                ),
                None,
            )),
        }
    }

    /// Runs a blocking host call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Host) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let host = Arc::clone(&self.host);
        tokio::task::spawn_blocking(move || call(host.as_ref()))
            .await
            .unwrap_or_else(|err| Err(format!("the request failed inside the MCP server: {err}")))
    }
}

impl ServerHandler for TrafficGuardianServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION"))
                    .with_title("NanoClaw traffic guardian"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.call(&request.name, request.arguments.as_ref())
            .await
            .map(CallToolResponse::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;
    use traffic_guardian_core::Severity;
    use traffic_guardian_ipc::{CheckConfigData, FindingsData, FindingsParams, StatusData};

    use super::*;

    /// Records what it was asked; answers findings, fails the rest.
    #[derive(Default)]
    struct Recording {
        asked: Mutex<Vec<FindingsParams>>,
    }

    impl Host for Recording {
        fn status(&self) -> Result<StatusData, String> {
            Err("no answer within 30000 ms".into())
        }
        fn findings(&self, params: FindingsParams) -> Result<FindingsData, String> {
            self.asked.lock().unwrap().push(params);
            Ok(FindingsData { findings: vec![] })
        }
        fn check_config(&self) -> Result<CheckConfigData, String> {
            Err("refused".into())
        }
    }

    fn args(value: serde_json::Value) -> rmcp::model::JsonObject {
        value.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn tools_reach_the_host_and_failures_are_tool_errors() {
        let host = Arc::new(Recording::default());
        let server = TrafficGuardianServer::new(host.clone(), Environment::default());

        let result = server
            .call(
                tools::FINDINGS,
                Some(&args(json!({"severity": "high", "limit": 3}))),
            )
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(false));
        assert_eq!(
            result.structured_content.unwrap(),
            json!({"returned": 0, "limit": 3, "findings": []})
        );
        let asked = host.asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].min_severity, Some(Severity::High));
        assert_eq!(asked[0].limit, 3);

        // A bad argument never reaches the host.
        let result = server
            .call(tools::FINDINGS, Some(&args(json!({"limit": 0}))))
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(true));
        assert_eq!(host.asked.lock().unwrap().len(), 1);

        let result = server.call(tools::STATUS, None).await.unwrap();
        assert_eq!(result.is_error, Some(true));
        let result = server
            .call(tools::STATUS, Some(&args(json!({"verbose": true}))))
            .await
            .unwrap();
        assert_eq!(result.is_error, Some(true));
        let result = server.call(tools::CHECK_CONFIG, None).await.unwrap();
        assert_eq!(result.is_error, Some(true));

        let err = server
            .call("clawsec_traffic_block", None)
            .await
            .unwrap_err();
        assert!(err.message.contains("unknown tool"), "{}", err.message);
    }

    #[tokio::test]
    async fn bad_ipc_settings_are_explained_by_every_tool() {
        let server = TrafficGuardianServer::new(
            Arc::new(Misconfigured(
                "the container's IPC settings are invalid: x".into(),
            )),
            Environment::default(),
        );
        for tool in [tools::STATUS, tools::FINDINGS, tools::CHECK_CONFIG] {
            let result = server.call(tool, None).await.unwrap();
            assert_eq!(result.is_error, Some(true), "{tool}");
            let text = serde_json::to_string(&result.content).unwrap();
            assert!(text.contains("IPC settings are invalid"), "{tool}: {text}");
        }
    }
}
