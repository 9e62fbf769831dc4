"""Company-level satisfaction survey campaigns (R3, SPEC §12; issue 12 item 1)."""

from core.campaign.answers import Collected, collect_answers
from core.campaign.launch import Launch, launch_campaign
from core.campaign.plan import plan_campaign, plan_text
from core.campaign.remind import Reminders, send_reminders
from core.campaign.run import run_campaigns
from core.campaign.status import (
    CampaignStatus,
    StratumStatus,
    campaign_status,
    close_campaign,
    status_text,
)
from core.campaign.topup import TopUp, top_up

__all__ = [
    "CampaignStatus",
    "Collected",
    "Launch",
    "Reminders",
    "StratumStatus",
    "TopUp",
    "campaign_status",
    "close_campaign",
    "collect_answers",
    "launch_campaign",
    "plan_campaign",
    "plan_text",
    "run_campaigns",
    "send_reminders",
    "status_text",
    "top_up",
]
