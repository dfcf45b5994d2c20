"""Specs: pydantic models for fleets, tenants and jobs, and YAML loading with clear errors."""

from kraft.spec.load import SpecError, load_fleet, load_tenants
from kraft.spec.models import FleetSpec, JobSpec, TenantSpec, TenantsSpec, Tier

__all__ = ["FleetSpec", "JobSpec", "SpecError", "TenantSpec", "TenantsSpec", "Tier",
           "load_fleet", "load_tenants"]
