"""User conflicts (duplicate emails, missing billing ids), merge, delete, billing-customer
import, and the audit log. Included at the site root from dashboard.project.urls."""

from __future__ import annotations

from django.urls import path

from dashboard.views import audit, conflicts, imports, merge, people

urlpatterns = [
    path("conflicts/", conflicts.conflict_list, name="conflicts"),
    path("conflicts/export.csv", conflicts.conflicts_export, name="conflicts-export"),
    path("conflicts/merge/", merge.merge_page, name="conflicts-merge"),
    path("conflicts/merge/preview/", merge.merge_preview, name="conflicts-merge-preview"),
    path("conflicts/merge/confirm/", merge.merge_confirm, name="conflicts-merge-confirm"),
    path("conflicts/merge-all/", conflicts.merge_all, name="conflicts-merge-all"),
    path("conflicts/jobs/<int:job_id>/", conflicts.conflict_job, name="conflicts-job"),
    path("conflicts/import/", imports.import_upload, name="conflicts-import"),
    path("conflicts/import/preview/", imports.import_preview, name="conflicts-import-preview"),
    path("conflicts/import/start/", imports.import_confirm, name="conflicts-import-start"),
    path("users/<int:profile_id>/delete/", people.user_delete, name="user-delete"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("audit/<int:entry_id>/", audit.audit_detail, name="audit-detail"),
    path("audit/<int:entry_id>/undo/", audit.audit_undo, name="audit-undo"),
]
