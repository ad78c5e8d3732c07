//! The OpenSandbox lifecycle and egress APIs over HTTP: error bodies, images and templates, the
//! entrypoint, and the access tokens its endpoints hand out.

mod common;
mod support;

use serde_json::{json, Value};
use support::{request_to, Reply, Server};

fn create(server: &Server, body: &Value) -> Reply {
    server.post("/opensandbox/v1/sandboxes", body)
}

fn created_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.json()["status"]["state"], json!("Running"), "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn root_errors_are_code_and_message_and_name_the_field() {
    let server = Server::start("os-errors", &[]);
    let missing = server.get("/opensandbox/v1/sandboxes/sbx_nope");
    assert_eq!(missing.status, 404, "{}", missing.body);
    let body = missing.json();
    assert_eq!(body["code"], json!("SANDBOX_NOT_FOUND"), "{body}");
    assert!(body["message"].as_str().unwrap().contains("sbx_nope"), "{body}");
    assert!(body.get("error").is_none(), "OpenSandbox's body, not the native one: {body}");

    let broken = server.try_request("POST", "/opensandbox/v1/sandboxes", Some("{not json"), &[]).unwrap();
    assert_eq!((broken.status, broken.json()["code"].clone()), (400, json!("MALFORMED_JSON")));
    for (body, field) in [
        (json!({"image": {"uri": "python:3.11"}, "volumes": [{"name": "v", "mountPath": "/v"}]}), "volumes"),
        (
            json!({"image": {"uri": "python:3.11"}, "resourceLimits": {"memory": "lots"}}),
            "resourceLimits.memory",
        ),
        (json!({"image": {"uri": "python:3.11"}, "resourceLimits": {"gpu": "1"}}), "resourceLimits.gpu"),
        (json!({"image": {"uri": "python:3.11"}, "timeout": 0}), "timeout"),
        (json!({"timeout": 60}), "image"),
        (
            json!({"image": {"uri": "x"}, "networkPolicy": {"egress": [{"action": "allow", "target": "a b"}]}}),
            "networkPolicy.egress[0].target",
        ),
    ] {
        let reply = create(&server, &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert!(reply.json()["message"].as_str().unwrap().contains(field), "{field}: {}", reply.body);
    }
    let listed = server.get("/opensandbox/v1/sandboxes?state=Sleeping");
    assert_eq!(listed.status, 400, "{}", listed.body);
    assert_eq!(server.get("/v1/sandboxes").json()["items"], json!([]), "no half-made sandbox");
}

#[test]
fn root_images_pick_templates_and_unmapped_ones_can_be_refused() {
    let config = "[server.templates.big]\nenv = { FROM_TEMPLATE = \"yes\" }\n\
                  [server.templates.big.resources]\nmemory_bytes = \"512M\"\n\
                  [server.opensandbox]\nonly_mapped_images = true\n\
                  [server.opensandbox.images]\n\"python:3.11\" = \"big\"\n";
    let server = Server::start_with_config("os-images", config, &[]);
    let id = created_id(&create(&server, &json!({"image": {"uri": "python:3.11"}, "timeout": 600})));
    let native = server.get(&format!("/v1/sandboxes/{id}")).json();
    assert_eq!(native["template"], json!("big"), "{native}");
    assert_eq!(native["limits"]["memory_bytes"], json!(512 << 20), "{native}");
    assert_eq!(native["env"]["FROM_TEMPLATE"], json!("yes"), "{native}");
    let info = server.get(&format!("/opensandbox/v1/sandboxes/{id}")).json();
    assert_eq!(info["image"]["uri"], json!("python:3.11"), "{info}");
    assert!(info["status"]["message"].as_str().unwrap().contains("`big`"), "{info}");
    let refused = create(&server, &json!({"image": {"uri": "ubuntu:22.04"}, "timeout": 600}));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.json()["code"], json!("IMAGE_NOT_MAPPED"), "{}", refused.body);
    // Request limits still override the template's.
    let id = created_id(&create(
        &server,
        &json!({"image": {"uri": "python:3.11"}, "resourceLimits": {"memory": "256Mi", "cpu": "500m"}}),
    ));
    let limits = &server.get(&format!("/v1/sandboxes/{id}")).json()["limits"];
    assert_eq!(
        (limits["memory_bytes"].clone(), limits["cpu_millis"].clone()),
        (json!(256 << 20), json!(500))
    );
}

#[test]
fn root_the_entrypoint_runs_at_start_and_again_after_resume() {
    let server = Server::start("os-entry", &[]);
    let body = json!({"image": {"uri": "python:3.11"}, "timeout": 600,
                      "entrypoint": ["sh", "-c", "echo run >> /workspace/starts; exec sleep 1000"]});
    let id = created_id(&create(&server, &body));
    let starts = |server: &Server| {
        let out = server.sh(&id, "cat /workspace/starts 2>/dev/null | wc -l");
        out["stdout"].as_str().unwrap().trim().to_owned()
    };
    support::wait_for(|| starts(&server) == "1");
    let commands = server.get(&format!("/v1/sandboxes/{id}/commands")).json();
    let entry = commands["items"].as_array().unwrap().iter().find(|c| c["argv"][0] == json!("sh")).cloned();
    assert_eq!(entry.expect("the entrypoint is a command")["status"], json!("running"), "{commands}");
    assert_eq!(server.post(&format!("/opensandbox/v1/sandboxes/{id}/pause"), &json!({})).status, 202);
    let paused = server.get(&format!("/opensandbox/v1/sandboxes/{id}")).json();
    assert_eq!(paused["status"]["state"], json!("Paused"), "{paused}");
    assert_eq!(server.post(&format!("/opensandbox/v1/sandboxes/{id}/resume"), &json!({})).status, 202);
    support::wait_for(|| starts(&server) == "2");
    assert_eq!(server.request("DELETE", &format!("/opensandbox/v1/sandboxes/{id}"), None).status, 204);
    let gone = server.get(&format!("/opensandbox/v1/sandboxes/{id}")).json();
    assert_eq!(
        (gone["status"]["state"].clone(), gone["status"]["reason"].clone()),
        (json!("Terminated"), json!("user_delete"))
    );
}

#[test]
fn root_an_endpoint_token_opens_its_own_sandbox_only() {
    let mut server = Server::start("os-token", &[]);
    let key = server.create_key("owner");
    let headers = [("OPEN-SANDBOX-API-KEY", key.as_str())];
    let make = || {
        let body = json!({"image": {"uri": "python:3.11"}, "timeout": 600,
                          "networkPolicy": {"defaultAction": "deny", "egress": [{"action": "allow", "target": "pypi.org"}]}});
        let reply = request_to(
            server.port,
            None,
            "POST",
            "/opensandbox/v1/sandboxes",
            Some(&body.to_string()),
            &headers,
        )
        .unwrap();
        created_id(&reply)
    };
    let (a, b) = (make(), make());
    let endpoint = |id: &str, port: u16| {
        let path = format!("/opensandbox/v1/sandboxes/{id}/endpoints/{port}");
        let reply = request_to(server.port, None, "GET", &path, None, &headers).unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    };
    let execd = endpoint(&a, 44772);
    assert_eq!(execd["endpoint"], json!(format!("localhost/opensandbox/execd/{a}")), "{execd}");
    let token = execd["headers"]["x-execd-access-token"].as_str().unwrap().to_owned();
    assert_eq!(endpoint(&a, 18080)["endpoint"], json!(format!("localhost/opensandbox/egress/{a}")));
    assert_eq!(endpoint(&a, 8000)["endpoint"], json!(format!("localhost/v1/sandboxes/{a}/ports/8000")));
    // `expires` (Unix seconds) asks for a signed link that needs no key.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let signed = |port: u16, expires: u64| {
        let path = format!("/opensandbox/v1/sandboxes/{a}/endpoints/{port}?expires={expires}");
        request_to(server.port, None, "GET", &path, None, &headers).unwrap()
    };
    let link = signed(8000, now + 600).json();
    let link_endpoint = link["endpoint"].as_str().unwrap();
    assert!(link_endpoint.starts_with("localhost/v1/links/"), "{link}");
    assert_eq!(link["headers"], json!({}), "{link}");
    let through =
        request_to(server.port, None, "GET", &link_endpoint["localhost".len()..], None, &[]).unwrap();
    assert_eq!(through.json()["error"]["code"], json!("PORT_UNREACHABLE"), "{}", through.body);
    for (port, expires) in [(8000, now - 1), (8000, now + 8 * 24 * 3600), (44772, now + 600)] {
        let refused = signed(port, expires);
        assert_eq!(refused.status, 400, "{port} {expires}: {}", refused.body);
        assert!(refused.body.contains("expires"), "{}", refused.body);
    }
    let policy = |id: &str, token: &str| {
        let path = format!("/opensandbox/egress/{id}/policy");
        request_to(server.port, None, "GET", &path, None, &[("X-EXECD-ACCESS-TOKEN", token)]).unwrap()
    };
    let own = policy(&a, &token);
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.json()["policy"]["egress"],
        json!([{"action": "allow", "target": "pypi.org"}]),
        "{}",
        own.body
    );
    assert_eq!(own.json()["mode"], json!("allow_list"), "{}", own.body);
    assert_eq!(policy(&b, &token).status, 404, "a token opens no other sandbox");
    assert_eq!(policy(&a, "0".repeat(64).as_str()).status, 404, "a guessed token opens nothing");
    let unauthenticated =
        request_to(server.port, None, "GET", &format!("/opensandbox/egress/{a}/policy"), None, &[]).unwrap();
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);
    // The lifecycle's own policy routes change the same policy.
    let path = format!("/opensandbox/v1/sandboxes/{a}/networkpolicy");
    let replaced =
        request_to(server.port, None, "PUT", &path, Some(r#"{"defaultAction": "deny"}"#), &headers).unwrap();
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["mode"], json!("deny_all"), "{}", replaced.body);
    assert_eq!(policy(&a, &token).json()["policy"]["egress"], json!([]));
}
