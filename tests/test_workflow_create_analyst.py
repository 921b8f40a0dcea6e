"""The create_analyst command: accounts in the analysts or viewers group."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "correct horse battery staple 42"


def run(*args, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    stdout = io.StringIO()
    call_command("create_analyst", *args, stdout=stdout)
    return stdout.getvalue()


def groups(username):
    user = get_user_model().objects.get(username=username)
    return list(user.groups.values_list("name", flat=True))


def test_creates_analyst_with_generated_password():
    output = run("carol", "--role", "analyst", "--email", "carol@example.com")

    user = get_user_model().objects.get(username="carol")
    password = output.split("Password (shown only once): ")[1].strip()
    assert user.check_password(password)
    assert user.email == "carol@example.com"
    assert groups("carol") == ["analysts"]
    assert user.has_perm("workflow.act")
    assert user.has_perm("workflow.export")


def test_creates_viewer_without_permissions():
    run("dave", "--role", "viewer")

    user = get_user_model().objects.get(username="dave")
    assert groups("dave") == ["viewers"]
    assert not user.has_perm("workflow.act")
    assert not user.has_perm("workflow.export")


def test_reads_password_from_stdin(monkeypatch):
    output = run(
        "carol",
        "--role",
        "analyst",
        "--password-stdin",
        stdin=f"{STRONG_PASSWORD}\nignored\n",
        monkeypatch=monkeypatch,
    )

    user = get_user_model().objects.get(username="carol")
    assert user.check_password(STRONG_PASSWORD)
    assert STRONG_PASSWORD not in output
    assert "Password" not in output


def test_rejects_empty_stdin_password(monkeypatch):
    with pytest.raises(CommandError) as error:
        run(
            "carol",
            "--role",
            "analyst",
            "--password-stdin",
            stdin="\n",
            monkeypatch=monkeypatch,
        )

    assert error.value.returncode == 2
    assert not get_user_model().objects.exists()


def test_rejects_weak_stdin_password(monkeypatch):
    with pytest.raises(CommandError, match="Password rejected") as error:
        run(
            "carol",
            "--role",
            "analyst",
            "--password-stdin",
            stdin="123\n",
            monkeypatch=monkeypatch,
        )

    assert error.value.returncode == 2
    assert not get_user_model().objects.exists()


def test_moves_existing_account_to_other_role():
    run("carol", "--role", "analyst")
    password_hash = get_user_model().objects.get(username="carol").password

    output = run("carol", "--role", "viewer")

    assert groups("carol") == ["viewers"]
    assert "already exists: moved to the viewer role" in output
    assert get_user_model().objects.get(username="carol").password == password_hash


def test_rejects_unknown_role():
    with pytest.raises(CommandError, match="Unknown role 'admin'") as error:
        run("carol", "--role", "admin")

    assert error.value.returncode == 2
    assert not get_user_model().objects.exists()


def test_rejects_invalid_username():
    with pytest.raises(CommandError, match="Invalid username") as error:
        run("carol smith!", "--role", "viewer")

    assert error.value.returncode == 2
    assert not get_user_model().objects.exists()


def test_creation_and_move_are_audited():
    run("carol", "--role", "analyst")
    run("carol", "--role", "viewer")

    events = list(AuditEvent.objects.order_by("id"))
    assert [event.action for event in events] == [
        "account_created",
        "account_role_changed",
    ]
    assert [event.details["role"] for event in events] == ["analyst", "viewer"]
    assert {event.actor_label for event in events} == {"command line"}
    assert {event.target for event in events} == {"carol"}
