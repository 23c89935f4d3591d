# One image for every role: `dispatch api`, `dispatch worker`, `dispatch sim`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY worker ./worker
COPY tasks ./tasks
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --home-dir /app dispatch
USER dispatch

ENTRYPOINT ["dispatch"]
CMD ["api"]
