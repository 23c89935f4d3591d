"""Contact triggers go through an outbox: the contact's own script records the trigger, and
enrolling from it twice (a consumer that died before acknowledging) makes one run."""

from __future__ import annotations

import asyncio

from worker.config import Settings
from worker.ids import new_id
from worker.models import ContactBody
from worker.models.automations import AutomationCreate
from worker.services.triggers import _one
from worker.store import automations, contacts, keys
from worker.store.client import create_redis


def test_a_created_contact_is_recorded_with_its_change_and_enrolled_once(
    settings: Settings,
) -> None:
    async def scenario() -> None:
        redis = create_redis(settings)
        account = new_id("acc").lower().replace("_", "-")
        body = AutomationCreate.model_validate(
            {
                "name": "on create",
                "trigger": {"type": "contact.created"},
                "steps": [{"type": "wait", "seconds": 3600}, {"type": "add_tag", "tag": "x"}],
            }
        )
        automation_id = new_id("aut")
        await automations.create(redis, account, automation_id, body)
        # Not active yet: a contact created now records nothing.
        await contacts.upsert(redis, account, "before", ContactBody(name="B"))
        automation = await automations.load(redis, account, automation_id)
        assert automation is not None
        await automations.set_active(redis, automation, True)
        await contacts.upsert(redis, account, "c-1", ContactBody(name="C"))
        await contacts.upsert(redis, account, "c-1", ContactBody(name="C again"))  # not new

        entries = [
            (entry_id, fields)
            for entry_id, fields in await redis.xrange(keys.contact_events())
            if fields["account"] == account
        ]
        assert [(f["contact"], f["created"]) for _, f in entries] == [("c-1", "1")]
        entry_id, fields = entries[0]
        for _ in range(2):  # the second time: as if the first consumer died before its XACK
            await _one(redis, entry_id, fields)
        runs = await redis.zrange(keys.automation_runs(account, automation_id), 0, -1)
        assert len(runs) == 1
        counts = await automations.step_counts(redis, account, automation_id)
        assert counts[0]["waiting"] == 1
        await redis.aclose()

    asyncio.run(scenario())
