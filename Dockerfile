FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY clients_import ./clients_import
RUN pip install --no-cache-dir .
RUN useradd --create-home app && mkdir -p /app/data && chown app /app/data
USER app
ENTRYPOINT ["clients-import"]
