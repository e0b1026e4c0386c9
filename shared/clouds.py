"""Microsoft 365 clouds: each fixes the sign-in host, the token scope and the mail hosts together."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cloud:
    """Endpoints of one Microsoft 365 cloud."""

    name: str
    authority_host: str
    mail_host: str
    federated_audience: str

    @property
    def token_scope(self) -> str:
        return f"https://{self.mail_host}/.default"

    @property
    def token_audience(self) -> str:
        return f"https://{self.mail_host}"


CLOUDS: dict[str, Cloud] = {
    "global": Cloud("global", "https://login.microsoftonline.com", "outlook.office365.com",
                    "api://AzureADTokenExchange"),
    "usgov": Cloud("usgov", "https://login.microsoftonline.us", "outlook.office365.us",
                   "api://AzureADTokenExchangeUSGov"),
    "usgovdod": Cloud("usgovdod", "https://login.microsoftonline.us", "outlook-dod.office365.us",
                      "api://AzureADTokenExchangeUSGov"),
    "china": Cloud("china", "https://login.partner.microsoftonline.cn", "partner.outlook.cn",
                   "api://AzureADTokenExchangeChina"),
}
