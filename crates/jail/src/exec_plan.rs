//! Everything the payload needs before its `execve`, converted to C strings before it is
//! spawned, so that the child only walks prepared arrays and allocates nothing.

use std::ffi::CString;

use crate::error::JailError;
use crate::spec::SandboxSpec;

/// `PATH` used to find the program when the spec's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Prepared `execve` arguments.
pub struct ExecPlan {
    /// Paths to try in order (one when argv[0] has a slash, one per `PATH` entry otherwise).
    pub candidates: Vec<CString>,
    /// The working directory inside the sandbox.
    pub workdir: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

/// NULL-terminated `argv` and `envp` arrays for `execve`, borrowed from an [`ExecPlan`].
pub type ExecPointers = (Vec<*const libc::c_char>, Vec<*const libc::c_char>);

impl ExecPlan {
    /// Convert the spec's argv and env.
    pub fn new(spec: &SandboxSpec) -> Result<ExecPlan, JailError> {
        let nul =
            |field: &'static str| JailError::InvalidSpec { field, reason: "contains a NUL byte".into() };
        let program = spec
            .argv
            .first()
            .ok_or(JailError::InvalidSpec { field: "argv", reason: "empty command".into() })?;
        let argv = spec
            .argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul("argv"))?;
        let env = spec
            .env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| nul("env"))?;
        let candidates = if program.contains('/') {
            vec![argv[0].clone()]
        } else {
            let path = spec.env.iter().find(|(k, _)| k == "PATH").map_or(DEFAULT_PATH, |(_, v)| v.as_str());
            path.split(':')
                .filter(|dir| !dir.is_empty())
                .filter_map(|dir| CString::new(format!("{}/{program}", dir.trim_end_matches('/'))).ok())
                .collect()
        };
        let workdir =
            CString::new(spec.workdir.as_os_str().as_encoded_bytes()).map_err(|_| nul("workdir"))?;
        Ok(ExecPlan { candidates, workdir, argv, env })
    }

    /// NULL-terminated pointer arrays for `execve`; valid while `self` lives.
    pub fn pointers(&self) -> ExecPointers {
        let argv = self.argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let env = self.env.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        (argv, env)
    }
}
