//! Realistic reports: crash reports of about 1.5 KB with 20–40 frames of
//! real Windows modules, feature requests in Chinese and English, and
//! heartbeats, from a fleet of machines.

use serde_json::{Value, json};

const MODULES: &[(&str, &[&str])] = &[
    (
        "ntdll.dll",
        &[
            "RtlUserThreadStart",
            "RtlpWaitOnCriticalSection",
            "RtlEnterCriticalSection",
            "NtWaitForSingleObject",
            "RtlpFreeHeap",
            "LdrpCallInitRoutine",
        ],
    ),
    (
        "kernel32.dll",
        &[
            "BaseThreadInitThunk",
            "CreateFileW",
            "WaitForSingleObjectEx",
        ],
    ),
    (
        "KERNELBASE.dll",
        &["RaiseException", "WaitForMultipleObjectsEx", "ReadFile"],
    ),
    (
        "user32.dll",
        &[
            "UserCallWinProcCheckWow",
            "DispatchMessageWorker",
            "SendMessageW",
            "CallWindowProcW",
        ],
    ),
    (
        "shell32.dll",
        &[
            "CDefView::WndProc",
            "CDefView::_OnContextMenu",
            "CShellItem::BindToHandler",
            "SHBrowseForFolderW",
        ],
    ),
    ("explorer.exe", &["CTray::_MessageLoop", "wWinMain"]),
    (
        "combase.dll",
        &["CoCreateInstance", "CStdMarshal::UnmarshalInterface"],
    ),
    (
        "msedge.dll",
        &["content::RenderFrameImpl::Navigate", "base::RunLoop::Run"],
    ),
    (
        "d3d11.dll",
        &[
            "CContext::TID3D11DeviceContext_Draw_",
            "CDevice::CreateTexture2D",
        ],
    ),
    ("wpsoffice.exe", &["KDocument::Save", "KApp::Run"]),
];

const REQUESTS: &[&str] = &[
    "希望任务栏支持按项目分组窗口",
    "任务栏能否按项目对窗口进行分组",
    "希望支持国密算法SM2证书登录",
    "打印机驱动安装太慢，希望优化",
    "Group taskbar windows by project",
    "Please support SM2 certificates for login",
    "Let administrators schedule updates outside working hours",
    "建议增加离线更新包的校验功能",
];

/// A deterministic pseudo-random stream (xorshift), so runs are repeatable.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The report id every template carries; replaced per request.
pub const PLACEHOLDER_ID: &str = "00000000-0000-4000-8000-000000000000";

fn envelope(schema: &str, machine: u64, consent: &str, payload: Value, rng: &mut Rng) -> Value {
    let revision = [3570, 4046, 4170][rng.below(3) as usize];
    json!({
        "report_id": PLACEHOLDER_ID,
        "schema": schema,
        "machine_id": format!("m-{machine:016x}"),
        "consent": consent,
        "sent_at": "2026-11-20T08:15:30Z",
        "os": {"product": "Windows 10 Enterprise G", "version": "10.0.19045", "build": 19045,
               "revision": revision, "locale": if machine.is_multiple_of(3) { "en-US" } else { "zh-CN" }, "arch": "x64"},
        "payload": payload,
    })
}

fn crash(machine: u64, rng: &mut Rng) -> Value {
    let frames: Vec<Value> = (0..20 + rng.below(21))
        .map(|_| {
            let (module, functions) = MODULES[rng.below(MODULES.len() as u64) as usize];
            let offset = format!("0x{:x}", rng.below(0x0010_0000));
            // Half the frames have no symbol, as in real minidumps.
            if rng.below(2) == 0 {
                json!({"module": module, "offset": offset})
            } else {
                let function = functions[rng.below(functions.len() as u64) as usize];
                json!({"module": module, "function": function, "offset": offset})
            }
        })
        .collect();
    let (module, _) = MODULES[rng.below(4) as usize + 3];
    let code = ["0xC0000005", "0xC0000409", "0xE06D7363"][rng.below(3) as usize];
    envelope(
        "crash/1",
        machine,
        "required",
        json!({
            "app": {"name": "explorer.exe", "version": "10.0.19041.3570"},
            "exception_code": code,
            "module": {"name": module, "version": "10.0.19041.3570", "offset": format!("0x{:x}", rng.below(0x0010_0000))},
            "frames": frames,
        }),
        rng,
    )
}

/// One report body (JSON, with [`PLACEHOLDER_ID`] as its id) of the mix:
/// 70% crashes, 10% feature requests, 20% heartbeats.
pub fn report(machine: u64, rng: &mut Rng) -> Vec<u8> {
    let value = match rng.below(10) {
        0..=6 => crash(machine, rng),
        7 => {
            let title = REQUESTS[rng.below(REQUESTS.len() as u64) as usize];
            envelope(
                "feature_request/1",
                machine,
                "optional",
                json!({"title": title, "category": "shell.taskbar"}),
                rng,
            )
        }
        _ => envelope(
            "heartbeat/1",
            machine,
            "required",
            json!({"day": "2026-11-20", "uptime_minutes": 480}),
            rng,
        ),
    };
    serde_json::to_vec(&value).expect("a report encodes")
}

/// The pool of report templates a run draws from: 1,024 reports of the mix
/// from up to `machines` machines, the same for every run.
pub fn templates(machines: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(42);
    (0..1024)
        .map(|i| report(i % machines.max(1), &mut rng))
        .collect()
}

/// Puts a fresh id in place of [`PLACEHOLDER_ID`].
pub fn with_fresh_id(template: &[u8]) -> Vec<u8> {
    let mut body = template.to_vec();
    let placeholder = PLACEHOLDER_ID.as_bytes();
    if let Some(at) = body
        .windows(placeholder.len())
        .position(|w| w == placeholder)
    {
        let id = uuid::Uuid::new_v4().to_string();
        body[at..at + placeholder.len()].copy_from_slice(id.as_bytes());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Envelope, Payload, SchemaId};

    #[test]
    fn reports_are_valid_envelopes_of_realistic_size() {
        let mut rng = Rng::new(7);
        let mut crash_sizes = Vec::new();
        for machine in 0..200 {
            let body = with_fresh_id(&report(machine, &mut rng));
            let envelope: Envelope = serde_json::from_slice(&body).expect("an envelope");
            assert_ne!(envelope.report_id.to_string(), PLACEHOLDER_ID);
            let schema: SchemaId = envelope.schema.parse().expect("known schema");
            Payload::decode(schema, &envelope.payload).expect("payload decodes");
            if schema == SchemaId::CRASH_V1 {
                crash_sizes.push(body.len());
            }
        }
        let mean = crash_sizes.iter().sum::<usize>() / crash_sizes.len();
        assert!(
            (1200..=2500).contains(&mean),
            "crash reports average {mean} bytes"
        );
    }
}
