//! The OpenAPI document, generated from the route handlers and the API types.

use utoipa::OpenApi;

use crate::routes::{code, commands, files, links, network, sandboxes, system};

/// Airlock's native API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Airlock", description = "Sandboxes for untrusted code: lifecycle, commands, code, files and operations."),
    paths(
        sandboxes::create, sandboxes::list, sandboxes::get, sandboxes::delete, sandboxes::renew,
        sandboxes::pause, sandboxes::resume,
        commands::run, commands::list, commands::get, commands::logs, commands::events, commands::stdin,
        commands::signal, commands::kill,
        files::upload, files::upload_multipart, files::download, files::list, files::stat, files::mkdir,
        files::move_file, files::remove, files::read_text, files::write_text,
        code::create_context, code::list_contexts, code::get_context, code::delete_context,
        code::restart_context, code::interrupt_context, code::run_code, code::run_once,
        network::get_policy, network::put_policy, network::patch_policy, network::denials, network::ingress,
        links::create, links::revoke, links::open,
        system::health, system::info, system::metrics,
    ),
    tags(
        (name = "sandboxes", description = "Long-lived sandboxes and their lifecycle"),
        (name = "commands", description = "Commands inside a sandbox"),
        (name = "code", description = "Stateful Python, JavaScript and Bash contexts, and one-shot runs"),
        (name = "files", description = "Files inside a sandbox, by paths that resolve in the sandbox"),
        (name = "network", description = "Egress policy and its denials, and ingress to ports inside a sandbox"),
        (name = "operations", description = "Health, information and metrics"),
    ),
    modifiers(&ApiKeyAuth)
)]
pub struct ApiDoc;

/// Declares the two ways to send an API key.
struct ApiKeyAuth;

impl utoipa::Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        openapi.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
    }
}
