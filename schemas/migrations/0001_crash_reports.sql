-- crash_reports: one row per accepted crash/1 report (raw; kept for the raw
-- retention period). Written by the processor from the reports topic.
CREATE TABLE IF NOT EXISTS crash_reports
(
    report_id        UUID,           -- id the client made for the report; the idempotency key
    received_at      DateTime,       -- when the edge received the report (UTC, server clock)
    sent_at          DateTime,       -- when the machine sent it (UTC, machine clock)
    org_id           String,         -- organisation (agency) the enrollment token belongs to
    machine_hash     String,         -- keyed HMAC-SHA256 of the machine id, hex; the raw id is never stored
    consent          String,         -- consent level the report was sent under: required | optional
    os_product       String,         -- Windows edition, e.g. 'Windows 10 Enterprise G'
    os_version       String,         -- major.minor.build, e.g. '10.0.19045'
    os_build         UInt32,         -- OS build number, e.g. 19045
    os_revision      UInt32,         -- update build revision (UBR), e.g. 3570
    os_locale        String,         -- UI locale, e.g. 'zh-CN'
    os_arch          String,         -- x64 | x86 | arm64
    os_build_full    String,         -- major.minor.build.revision, e.g. '10.0.19045.3570'
    build_key        UInt64,         -- os_build_full packed so that it sorts in version order (grouping::BuildVersion)
    app_name         String,         -- crashing application's executable name
    app_version      String,         -- crashing application's version
    exception_code   String,         -- NTSTATUS code, upper-case hex, e.g. '0xC0000005'
    module_name      String,         -- faulting module's name, e.g. 'ntdll.dll'
    module_version   String,         -- faulting module's version
    module_offset    String,         -- fault offset in the module, hex
    frame_modules    Array(String),  -- stack, innermost first: module of each frame
    frame_functions  Array(String),  -- function of each frame; '' when unknown
    frame_offsets    Array(String),  -- offset of each frame in its module, hex
    grouping_version UInt16,         -- version of the grouping algorithm that set bucket and signature
    bucket           String,         -- WER-style bucket: hash of app, module, versions, exception code, offset
    signature        String,         -- Socorro-style signature: top non-boilerplate frames, 'module!function | ...'
    scrubbed_total   UInt32,         -- how many personal-data matches the edge replaced in this report
    kafka_partition  UInt32,         -- reports-topic partition the row came from
    kafka_offset     UInt64,         -- offset in that partition
    inserted_at      DateTime        -- when the processor inserted the row (UTC)
)
ENGINE = ReplacingMergeTree(inserted_at)
PARTITION BY toYYYYMMDD(received_at)
ORDER BY (report_id);
