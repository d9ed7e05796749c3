"""runs keep the stages they went through; an index for the change token (issue 13)

Revision ID: d13_live
Revises: c12_clients
Create Date: 2026-12-02 11:30:00

A run started before this keeps NULL: its track falls back to the pipeline's current stages
(what every run showed before), so existing data needs no backfill.
"""
from alembic import op
import sqlalchemy as sa


revision = 'd13_live'
down_revision = 'c12_clients'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stages', sa.JSON(), nullable=True))
        batch_op.create_index('ix_pipeline_run_project_live', ['project_id', 'ended_at', 'status', 'version'], unique=False)


def downgrade():
    with op.batch_alter_table('pipeline_run', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_run_project_live')
        batch_op.drop_column('stages')
