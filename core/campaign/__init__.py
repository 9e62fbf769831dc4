"""Company-level satisfaction survey campaigns (R3, SPEC §12; issue 12 item 1)."""

from core.campaign.launch import Launch, launch_campaign
from core.campaign.plan import plan_campaign, plan_text
from core.campaign.status import (
    CampaignStatus,
    StratumStatus,
    campaign_status,
    close_campaign,
    status_text,
)

__all__ = [
    "CampaignStatus",
    "Launch",
    "StratumStatus",
    "campaign_status",
    "close_campaign",
    "launch_campaign",
    "plan_campaign",
    "plan_text",
    "status_text",
]
