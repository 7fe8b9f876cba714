"""Two signatures a message with `dkim.ed25519` (RFC 8463): RSA and Ed25519, each verified by
dkimpy (Ed25519 through PyNaCl) against its own DNS record, with a PEM key and one dkimpy's
`dknewkey` made, for the mail we send: issue messages signed directly and on a signing thread,
a real send through SMTP on one connection and several, the web's mail; and the settings'
errors, each one line."""

from __future__ import annotations

import base64
import email
import subprocess
import sys
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from test_delivery import add_readers, send, smtp_config
from test_dkim import REQUIRED, KeyPair, _generate, issue_bytes, on_a_thread, welcome_mail

from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.mail import dkim
from newsletter.settings import Config, DkimConfig, Ed25519Config, WebConfig
from newsletter.testing.mta import Faults, FaultyMTA


@dataclass(frozen=True)
class Keys:
    rsa: KeyPair
    pem: Path  # made as `openssl genpkey -algorithm ed25519` makes it
    public: bytes  # its 32 bytes, as published in DNS
    dknewkey: Path  # made by dkimpy's `dknewkey --ktype ed25519`: the private key's base64
    dknewkey_record: bytes  # the TXT record dknewkey wrote beside it

    def dns(self, name: bytes, timeout: int = 5) -> bytes:
        if name == b"ed2026._domainkey.example.com.":
            return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(self.public)
        if name == b"dk2026._domainkey.example.com.":
            return self.dknewkey_record
        return self.rsa.dns(name, timeout)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("dkim")
    key = ed25519.Ed25519PrivateKey.generate()
    raw, plain = serialization.Encoding.Raw, serialization.NoEncryption()
    pem = folder / "ed25519.pem"
    pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, plain)
    )
    public = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
    made = subprocess.run(
        [sys.executable, "-m", "dkim.dknewkey", "--ktype", "ed25519", "dk2026"],
        cwd=folder, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = (folder / "dk2026.dns").read_bytes()
    return Keys(_generate(folder), pem, public, folder / "dk2026.key", record)


SELECTORS = {"pem": "ed2026", "dknewkey": "dk2026"}


def both(keys: Keys, monkeypatch: pytest.MonkeyPatch, form: str = "pem") -> DkimConfig:
    monkeypatch.setenv("TEST_DKIM_KEY", str(keys.rsa.private_path))
    monkeypatch.setenv("TEST_DKIM_ED25519_KEY", str(getattr(keys, form)))
    return DkimConfig(
        selector="news2026",
        domain="example.com",
        private_key_env="TEST_DKIM_KEY",
        ed25519=Ed25519Config(selector=SELECTORS[form], private_key_env="TEST_DKIM_ED25519_KEY"),
    )


@pytest.fixture(params=["pem", "dknewkey"])
def config(keys: Keys, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Config:
    return Config(
        root=Path(__file__).resolve().parent.parent,
        name="Leader Notes",
        sender="Leader Notes <news@example.com>",
        reply_to="news@example.com",
        web=WebConfig(public_url="https://example.com/web/"),
        dkim=both(keys, monkeypatch, request.param),
    )


def verified(data: bytes, keys: Keys) -> list[str]:
    """The algorithm of each DKIM-Signature, top first, after dkimpy verified every one."""
    signatures = email.message_from_bytes(data).get_all("DKIM-Signature") or []
    for index in range(len(signatures)):
        assert dkimpy.DKIM(data).verify(idx=index, dnsfunc=keys.dns), index
    tags = [dict(part.strip().split("=", 1) for part in "".join(str(s).split()).split(";") if part)
            for s in signatures]  # fmt: skip
    assert all({name.encode() for name in tag["h"].split(":")} >= REQUIRED for tag in tags)
    return [tag["a"] for tag in tags]


def test_an_issue_message_carries_an_rsa_and_an_ed25519_signature(
    config: Config, keys: Keys
) -> None:
    data = issue_bytes(config)
    assert verified(data, keys) == ["rsa-sha256", "ed25519-sha256"]
    lines, inside = [], False  # the physical lines of the DKIM-Signature fields
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        inside = line.startswith(b"DKIM-Signature:") or (inside and line[:1] in (b" ", b"\t"))
        lines += [line] if inside else []
    assert len(lines) > 8 and all(len(line) <= 78 for line in lines), lines
    tampered = data.replace(b"Hello Zo=C3=AB", b"Hello Bob", 1)
    assert tampered != data
    resubjected = data.replace(b"Subject: January notes", b"Subject: January news", 1)
    assert resubjected != data
    for index in (0, 1):
        with pytest.raises(dkimpy.ValidationError, match="body hash mismatch"):
            dkimpy.DKIM(tampered).verify(idx=index, dnsfunc=keys.dns)
        assert not dkimpy.DKIM(resubjected).verify(idx=index, dnsfunc=keys.dns)


def test_signing_on_a_thread_signs_both_ways_for_each_reader(config: Config, keys: Keys) -> None:
    for reader, data, direct in on_a_thread(config):
        for message in (data, direct):
            assert verified(message, keys) == ["rsa-sha256", "ed25519-sha256"]
            assert email.message_from_bytes(message)["To"].endswith(f"<{reader.email}>")


def test_the_web_mail_is_signed_both_ways(config: Config, keys: Keys) -> None:
    assert verified(welcome_mail(config, "Zoë"), keys) == ["rsa-sha256", "ed25519-sha256"]


@pytest.mark.parametrize("connections", [1, 3])
def test_every_message_of_a_real_send_verifies_both_ways(
    publication: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, connections: int
) -> None:
    with FaultyMTA(Faults(drop_after=4)) as mta:
        config = smtp_config(publication, mta, connections=connections)
        config = replace(config, dkim=both(keys, monkeypatch))
        readers = {email for email, _ in add_readers(config, 10)}
        report = send(config)
        assert report.sent_now == len(readers)
        received = {m.rcpt_tos[0]: m.data for m in mta.messages}
        assert set(received) == readers
        for data in received.values():
            assert verified(data, keys) == ["rsa-sha256", "ed25519-sha256"]


def test_the_ed25519_settings_fail_in_one_line(
    keys: Keys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = both(keys, monkeypatch)
    assert settings.ed25519 is not None
    base = Config(root=tmp_path, dkim=settings)
    no_selector = replace(base, dkim=replace(settings, ed25519=Ed25519Config(selector="")))
    with pytest.raises(ConfigError) as err:
        dkim.check(no_selector)
    assert err.value.field == "dkim.ed25519.selector"
    monkeypatch.delenv("TEST_DKIM_ED25519_KEY")
    with pytest.raises(ConfigError, match=r"\$TEST_DKIM_ED25519_KEY, which is not set") as err:
        dkim.check(base)
    assert err.value.field == "dkim.ed25519.private_key_env"
    (tmp_path / "short.key").write_bytes(base64.b64encode(b"x" * 31))
    for wrong, why in (
        (keys.rsa.private_path, "not an Ed25519 private key"),  # the RSA key in its place
        (tmp_path / "missing.key", "cannot read the DKIM private key"),
        (tmp_path / "short.key", "not an Ed25519 private key"),
    ):
        monkeypatch.setenv("TEST_DKIM_ED25519_KEY", str(wrong))
        with pytest.raises(ConfigError, match=why):
            dkim.sign(base, b"From: a@example.com\r\n\r\nx\r\n")
    monkeypatch.setenv("TEST_DKIM_ED25519_KEY", str(keys.pem))  # and in the RSA key's place:
    monkeypatch.setenv("TEST_DKIM_KEY", str(keys.pem))
    with pytest.raises(ConfigError, match=r"an Ed25519 key goes in dkim\.ed25519"):
        dkim.check(base)


def test_newsletter_yaml_and_the_environment_set_the_second_signature(
    publication: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = publication / "newsletter.yaml"
    path.write_text(
        path.read_text(encoding="utf-8")
        + textwrap.dedent("""\
            dkim:
              selector: news2026
              domain: example.com
              ed25519: {selector: ed2025}
            """),
        encoding="utf-8",
    )
    monkeypatch.setenv("NEWSLETTER_DKIM__ED25519__SELECTOR", "dk2026")
    monkeypatch.setenv("NEWSLETTER_DKIM_KEY", str(keys.rsa.private_path))
    monkeypatch.setenv("NEWSLETTER_DKIM_ED25519_KEY", str(keys.dknewkey))  # a secret, not unknown
    config = load_config(publication)
    assert config.dkim is not None
    assert config.dkim.ed25519 == Ed25519Config("dk2026", "NEWSLETTER_DKIM_ED25519_KEY")
    assert verified(issue_bytes(config), keys) == ["rsa-sha256", "ed25519-sha256"]
