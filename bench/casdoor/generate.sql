-- A Casdoor-shaped PostgreSQL data set for measuring `jeton import casdoor`: the fixture database
-- (tests/fixtures/casdoor, loaded first) plus :users generated users in organization `acme`, spread over
-- the eight password schemes (hashes copied from the fixtures' users, so every row is valid), with groups,
-- properties and addresses like real rows. One INSERT ... SELECT over generate_series: about 20 s for a
-- million rows on the project's 2-core VM.
--
--   psql -v users=1000000 -d casdoor_bench -f generate.sql
\set ON_ERROR_STOP on
INSERT INTO "user" (
    owner, name, created_time, updated_time, deleted_time, id, external_id, type, password, password_salt,
    password_type, display_name, first_name, last_name, avatar, email, email_verified, phone, country_code,
    region, location, address, affiliation, title, tag, language, gender, score, is_admin, is_forbidden,
    is_deleted, signup_application, ldap, groups, properties, uid_number, preferred_mfa_type, totp_secret,
    roles, permissions, last_change_password_time, need_update_password, recovery_codes
)
SELECT
    'acme',
    'bench-' || i,
    '2025-01-01T00:00:00+08:00',
    '2025-06-01T00:00:00+08:00',
    '',
    md5('bench-user-' || i)::uuid::text,
    '',
    'normal-user',
    t.password,
    t.password_salt,
    t.password_type,
    'Bench User ' || i,
    'Bench',
    'User ' || i,
    'https://cdn.casbin.org/img/casbin.svg',
    'bench-' || i || '@acme.example',
    (i % 2 = 0),
    lpad((i % 100000000)::text, 10, '5'),
    'US',
    '',
    'Springfield',
    '["1 Bench Street","Springfield"]',
    'Acme',
    '',
    'staff',
    'en',
    '',
    i % 1000,
    false,
    (i % 997 = 0),
    (i % 991 = 0),
    'app-acme',
    '',
    CASE WHEN i % 3 = 0 THEN '["acme/engineering","acme/platform"]' WHEN i % 3 = 1 THEN '["acme/sales"]' ELSE '[]' END,
    '{"department":"bench","employeeNumber":"' || i || '"}',
    0,
    '',
    '',
    '[]',
    '[]',
    '',
    false,
    'null'
FROM generate_series(1, :users) AS i
JOIN (
    SELECT row_number() OVER (ORDER BY name) - 1 AS k, password, password_salt,
           CASE WHEN password_type = '' THEN 'bcrypt' ELSE password_type END AS password_type
    FROM "user"
    WHERE owner = 'acme' AND password <> '' AND name NOT IN ('judy', 'mallory')
) AS t ON t.k = i % 16;
ANALYZE "user";
